"""The `cctv` command groups, one module each; cctv/cli.py composes them into one Typer app."""
