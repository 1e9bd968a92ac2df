"""Write docs/cli.md, the command-line reference, from the parser (tests/test_cli.py checks they agree)."""

from pathlib import Path

from cnnbench.cli.reference import cli_reference_markdown

PAGE = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
PAGE.write_text(cli_reference_markdown(), encoding="utf-8")
print(f"wrote {PAGE}")
