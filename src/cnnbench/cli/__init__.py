"""Command line: one module per command (or group); each parses, calls the library and prints. User mistakes
become one-paragraph errors with exit code 2."""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Callable

from ..errors import CnnbenchError
from ..version import __version__
from . import catalogue, evaluate, insight, profile, robustness, study, train, use
from .common import EXIT_USAGE, int_list, training_options_markdown
from .study import study_spec_from_args
from .train import train_config_from_args

__all__ = [
    "EXIT_USAGE",
    "build_parser",
    "exit_code_of",
    "int_list",
    "main",
    "study_spec_from_args",
    "train_config_from_args",
    "training_options_markdown",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnnbench", description="Train, evaluate and compare CNNs on image classification data."
    )
    parser.add_argument("--version", action="version", version=f"cnnbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train.add_parser(sub)
    study.add_parsers(sub)  # compare, status, report
    profile.add_parser(sub)
    insight.add_parser(sub)
    evaluate.add_parser(sub)
    use.add_parsers(sub)  # predict, export
    robustness.add_parser(sub)
    catalogue.add_parsers(sub)  # models, datasets
    return parser


# File-system conditions a user fixes (space, permissions, path length), not bugs: one paragraph, not a traceback.
FILE_SYSTEM_ERRORS = {
    errno.ENOSPC: "the disk is full",
    errno.EFBIG: "the file grew past the size this system or process allows",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "the operation is not permitted",
    errno.ENAMETOOLONG: "the path is too long",
    getattr(errno, "EDQUOT", -1): "the disk quota is exhausted",
}


def exit_code_of(command: Callable[[], int | None], prog: str = "cnnbench") -> int:
    """Run ``command``; a user mistake (CnnbenchError) or a file-system condition the user can fix (full disk,
    read-only or unwritable folder, a path too long) becomes a one-paragraph message and exit code 2."""
    code = EXIT_USAGE
    try:
        return command() or 0
    except CnnbenchError as e:
        message, code = str(e), getattr(e, "exit_code", EXIT_USAGE)
    except OSError as e:
        if e.errno not in FILE_SYSTEM_ERRORS:
            raise
        where = f" ({e.filename})" if e.filename else ""
        message = (
            f"Could not write or read a file{where}: {FILE_SYSTEM_ERRORS[e.errno]}. Files already written are intact "
            "(cnnbench writes each one whole, or not at all), and an interrupted run resumes with --resume: free "
            "space, choose another --out folder, or fix the folder's permissions, then run the command again."
        )
    # Under torchrun every process meets the same mistake: one message (rank 0's) is enough.
    if os.environ.get("RANK", "0") == "0":
        print(f"{prog}: error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return exit_code_of(lambda: args.func(args))  # each command's module set its function on its parser
