"""Installers: wire agentqueue into agent clients (MCP configs, rules, skills), `init`, `doctor`.

`clients` is the one table of clients; `mcp_config`, `rules` and `skills` plan edits from it;
`merge` (with `jsonc`) makes the edits safe; `plan` runs check / dry-run / apply; `paths`
keeps every write inside the project root or the user's config dirs.
"""
