"""Rewrite README.md's table of training options from the parser (tests/test_cli.py checks they agree)."""

import re
from pathlib import Path

from cnnbench.cli import training_options_markdown

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN, END = "<!-- training options: begin -->\n", "<!-- training options: end -->"

text = README.read_text(encoding="utf-8")
text = re.sub(
    re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: BEGIN + training_options_markdown() + END, text, flags=re.S
)
README.write_text(text, encoding="utf-8")
