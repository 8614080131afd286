"""The `agentqueue` command line (typer): `main` is the console script, `app` the typer app."""

from agentqueue.cli.app import app, main

__all__ = ["app", "main"]
