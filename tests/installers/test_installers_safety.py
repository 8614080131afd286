"""Safe edits: comments survive, an unparsable file is never replaced, hand edits need --force,
backups never overwrite a file, and each client's quirks (opencode 2, Zed's first-match rules)."""

from __future__ import annotations

from pathlib import Path

from agentqueue.installers import jsonc
from tests.installers.conftest import Cli, tree

VSCODE_JSONC = """{
  // Servers for this workspace (a comment the user wrote)
  "servers": {
    /* the team's own server */
    "team": {"type": "stdio", "command": "team-mcp"}, // trailing comma next
  },
}
"""


def test_jsonc_with_comments_is_edited_keeping_them(cli: Cli, project: Path) -> None:
    path = project / ".vscode" / "mcp.json"
    path.parent.mkdir()
    path.write_text(VSCODE_JSONC)
    assert cli("install-mcp", "--client", "vscode").exit_code == 0
    text = path.read_text()
    for comment in ("// Servers for this workspace", "/* the team's own server */", "// trailing"):
        assert comment in text
    servers = jsonc.loads(text)["servers"]
    assert servers["team"] == {"type": "stdio", "command": "team-mcp"}
    assert servers["agentqueue"] == {"type": "stdio", "command": "agentqueue", "args": ["mcp"]}
    assert (project / ".vscode" / "mcp.json.bak").read_text() == VSCODE_JSONC
    assert cli("install-mcp", "--client", "vscode", "--uninstall").exit_code == 0
    assert path.read_text() == VSCODE_JSONC


def test_an_unparsable_file_is_never_clobbered(cli: Cli, project: Path) -> None:
    broken = '{\n  "mcpServers": {\n    "other": {"command": "x"\n  }\n'  # a brace missing
    (project / ".mcp.json").write_text(broken)
    (project / ".cursor").mkdir()
    result = cli("install-mcp", "--client", "claude-code,cursor")
    assert result.exit_code == 2
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: ")
    assert "does not parse" in last
    assert "nothing was written" in last
    assert '"agentqueue"' in result.output  # the snippet to add by hand
    assert (project / ".mcp.json").read_text() == broken
    assert not (project / ".cursor" / "mcp.json").exists()  # all or nothing
    assert not list(project.glob("*.bak"))
    assert cli("install-mcp", "--client", "claude-code", "--check").exit_code == 1


def test_codex_toml_keeps_comments_and_other_tables(cli: Cli, home: Path) -> None:
    config = home / ".codex" / "config.toml"
    config.parent.mkdir()
    original = '# my Codex settings\nmodel = "o3" # fast\n\n[profiles.deep]\nmodel = "o3-pro"\n'
    config.write_text(original)
    assert cli("install-mcp", "--client", "codex", "--scope", "user").exit_code == 0
    text = config.read_text()
    assert text.startswith(original)
    assert "[mcp_servers.agentqueue]" in text
    assert cli("install-mcp", "--client", "codex", "--scope", "user", "--uninstall").exit_code == 0
    assert config.read_text() == original


def test_a_hand_edited_rules_file_needs_force(cli: Cli, project: Path) -> None:
    (project / ".cursor").mkdir()
    assert cli("install-rules", "--client", "cursor").exit_code == 0
    rule = project / ".cursor" / "rules" / "agentqueue.mdc"
    rule.write_text(rule.read_text() + "\nmy own line\n")
    refused = cli("install-rules", "--client", "cursor")
    assert refused.exit_code == 2
    assert "--force" in refused.output
    assert cli("install-rules", "--client", "cursor", "--uninstall").exit_code == 2
    assert "my own line" in rule.read_text()
    assert cli("install-rules", "--client", "cursor", "--force").exit_code == 0
    assert "my own line" not in rule.read_text()
    assert "my own line" in (project / ".cursor" / "rules" / "agentqueue.mdc.bak").read_text()


def test_a_file_of_someone_else_at_our_path_is_kept(cli: Cli, project: Path) -> None:
    rule = project / ".windsurf" / "rules" / "agentqueue.md"
    rule.parent.mkdir(parents=True)
    rule.write_text("their rules\n")
    assert cli("install-rules", "--client", "windsurf").exit_code == 2
    assert cli("install-rules", "--client", "windsurf", "--uninstall").exit_code == 0
    assert rule.read_text() == "their rules\n"


def test_an_edited_block_and_broken_markers_are_refused(cli: Cli, project: Path) -> None:
    agents = project / "AGENTS.md"
    assert cli("install-rules", "--client", "codex").exit_code == 0
    agents.write_text(agents.read_text().replace("## Handlers", "## My handlers"))
    assert cli("install-rules", "--client", "codex").exit_code == 2
    agents.write_text("intro\n<!-- agentqueue:begin 0.1.0 sha256:000000000000 -->\nno end\n")
    result = cli("install-rules", "--client", "codex", "--force")
    assert result.exit_code == 2
    assert "without" in result.output


def test_backups_never_overwrite_a_file(cli: Cli, project: Path) -> None:
    (project / ".mcp.json").write_text('{"mcpServers": {}}\n')
    (project / ".mcp.json.bak").write_text("the user's own backup\n")
    assert cli("install-mcp", "--client", "claude-code").exit_code == 0
    assert (project / ".mcp.json.bak").read_text() == "the user's own backup\n"
    assert (project / ".mcp.json.bak.2").read_text() == '{"mcpServers": {}}\n'


def test_opencode_2_shape_is_kept(cli: Cli, project: Path) -> None:
    path = project / "opencode.jsonc"
    path.write_text('{\n  "mcp": {\n    "servers": {}\n  }\n}\n')
    assert cli("install-mcp", "--client", "opencode").exit_code == 0
    servers = jsonc.loads(path.read_text())["mcp"]["servers"]
    assert servers["agentqueue"]["command"] == ["agentqueue", "mcp"]
    assert not (project / "opencode.json").exists()


def test_zed_rules_go_to_the_file_zed_reads(cli: Cli, project: Path) -> None:
    (project / ".cursorrules").write_text("be brief\n")
    assert cli("install-rules", "--client", "zed").exit_code == 0
    assert "agentqueue:begin" in (project / ".cursorrules").read_text()
    assert not (project / "AGENTS.md").exists()


def test_scopes_a_client_lacks_are_reported(cli: Cli, project: Path) -> None:
    result = cli("install-mcp", "--client", "windsurf")
    assert result.exit_code == 2
    assert "no project-level MCP config" in result.output
    both = cli("install-mcp", "--client", "windsurf,cursor")
    assert both.exit_code == 0
    assert (project / ".cursor" / "mcp.json").exists()


def test_auto_detects_and_bad_input_is_one_line(cli: Cli, project: Path) -> None:
    none = cli("install-mcp")
    assert none.exit_code == 2
    assert none.output.count("\n") == 1
    assert "no agent client" in none.output
    (project / ".zed").mkdir()
    assert cli("install-mcp", "--client", "auto").exit_code == 0
    assert set(tree(project)) == {".zed/settings.json"}
    for args in (
        ("--client", "emacs"),
        ("--transport", "http"),
        ("--transport", "carrier-pigeon"),
        ("--server-url", "https://x"),
        ("--transport", "http", "--server-url", "ftp://x"),
        ("--dry-run", "--check"),
    ):
        result = cli("install-mcp", "--client", "zed", *args)
        assert result.exit_code == 2, (args, result.output)
        assert result.output.count("\n") == 1, (args, result.output)
        assert result.output.startswith("error: ")
