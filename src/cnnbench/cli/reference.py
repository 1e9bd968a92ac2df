"""The docs' command-line reference (docs/cli.md), generated from the parser itself: every command with its
options, then the training options `train` and `compare` share (tests/test_cli.py keeps the page equal to this)."""

from __future__ import annotations

import argparse

from .common import add_train_options, training_options_markdown

TITLE = "# Command-line reference"


def _training_dests() -> set[str]:
    parser = argparse.ArgumentParser()
    add_train_options(parser)
    return {a.dest for a in parser._actions}


def _flags(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`"
    choices = f" {{{', '.join(map(str, action.choices))}}}" if action.choices else ""
    return " / ".join(f"`{o}`" for o in action.option_strings) + choices


def _cell(text: str | None) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ")


def cli_reference_markdown() -> str:
    from . import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help for c in commands._choices_actions}
    training = _training_dests()
    out = [
        TITLE,
        "",
        "Generated from cnnbench's own parser (`python scripts/cli_reference.py`); `cnnbench COMMAND --help` says the "
        "same. `python -m cnnbench ...` works as well.",
        "",
    ]
    for name, sub in commands.choices.items():
        said = _cell(helps.get(name))
        out += [f"## cnnbench {name}", "", said[:1].upper() + said[1:] + ".", ""]
        rows = [a for a in sub._actions if a.dest != "help" and a.dest not in training]
        if rows:
            out += ["| argument | meaning |", "|---|---|"]
            out += [f"| {_flags(a)} | {_cell(a.help)} |" for a in rows]
            out.append("")
        if any(a.dest in training for a in sub._actions):
            out += ["And every one of the [training options](#training-options).", ""]
    out += [
        "## Training options",
        "",
        "`cnnbench train` and `cnnbench compare` take these; a `--config` YAML or JSON file takes the same names with "
        "underscores (`batch_size: 64`), and flags win over it.",
        "",
        training_options_markdown(),
    ]
    return "\n".join(out)
