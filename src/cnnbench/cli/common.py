"""What several commands share: option builders, list parsing, records files, run-or-study targets."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path

from ..config import DEVICES
from ..errors import ConfigError

EXIT_USAGE = 2


def bool_flag(parser: argparse.ArgumentParser, name: str, help: str) -> None:
    parser.add_argument(
        f"--{name}",
        dest=name.replace("-", "_"),
        action=argparse.BooleanOptionalAction,
        default=argparse.SUPPRESS,
        help=help,
    )


def tensorboard_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tensorboard",
        metavar="DIR",
        default=None,
        help="also log metrics, per-layer dynamics and "
        "weight/gradient histograms for TensorBoard into DIR/<run> (needs the tensorboard package)",
    )


def device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        default="auto",
        choices=DEVICES,
        help="auto: a CUDA GPU, else an Apple GPU (mps), else the CPU (default auto)",
    )


def add_train_options(p: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, generated from the field: its help, choices and metavar (config.option),
    its type from the annotation, its default read from TrainConfig so that it cannot drift. Unset flags keep the
    config file's or the default value."""
    from ..config import TrainConfig, field_type

    defaults = TrainConfig()
    p.add_argument(
        "--config",
        "--recipe",
        metavar="FILE",
        help="YAML or JSON file of training options, such as a published script's recipe (recipes/); flags override it",
    )
    for f in dataclasses.fields(TrainConfig):
        meta = f.metadata
        if not meta.get("cli", True):
            continue
        flag = f.name.replace("_", "-")
        allowed = f"; {meta['range'].text()}" if meta.get("range") else ""
        help_text = f"{meta['help']}{allowed}; default {shown_default(f.name, getattr(defaults, f.name))}"
        kind = field_type(f.name)
        if kind is bool:
            bool_flag(p, flag, help_text)
            continue
        extra = {"choices": meta["choices"]} if meta.get("choices") else {"type": kind}
        if meta.get("metavar"):
            extra["metavar"] = meta["metavar"]
        p.add_argument(f"--{flag}", default=argparse.SUPPRESS, help=help_text, **extra)
    p.add_argument(
        "--no-precise-bn",
        dest="precise_bn",
        action="store_const",
        const=0,
        default=argparse.SUPPRESS,
        help="evaluate with the running batch-norm statistics of training (same as --precise-bn 0)",
    )


# What a None default means, per field, for people reading --help or the docs.
NONE_MEANS = {
    "threads": "all cores",
    "data_dir": "$CNNBENCH_DATA, else ~/.cache/cnnbench/data",
    "limit_train": "all",
    "limit_test": "all",
    "resize": "keep the size",
    "test_split": "0.2",
    "pretrained": "from scratch",
    "check_every": "1 on CPU, 25 on GPU",
}


def shown_default(field: str, value) -> str:
    if value is None:
        return NONE_MEANS.get(field, "none")
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def training_options_markdown() -> str:
    """The table of training options, generated from the parser (docs/cli.md holds it; a test keeps them equal)."""
    parser = argparse.ArgumentParser()
    add_train_options(parser)
    lines = ["| option | meaning (default) |", "|---|---|"]
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        flags = " / ".join(f"`{o}`" for o in action.option_strings)
        choices = f" {{{', '.join(action.choices)}}}" if action.choices else ""
        lines.append(f"| {flags}{choices} | {action.help} |")
    return "\n".join(lines) + "\n"


def training_callbacks(dynamics: bool, tensorboard: str | None = None) -> list:
    from ..engine import ConsoleProgress

    callbacks = [ConsoleProgress()]
    recorder = None
    if dynamics:
        from ..analysis.insight.dynamics import WeightDynamics

        recorder = WeightDynamics()
        callbacks.append(recorder)
    if tensorboard:
        from ..analysis.insight.tensorboard import TensorBoardLogger

        callbacks.append(TensorBoardLogger(tensorboard, recorder))
    return callbacks


def whole_numbers(text: str) -> tuple[int, ...]:
    """Comma-separated whole numbers such as 32,64,128; () when the text is not that."""
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        return ()


def int_list(text: str) -> tuple[int, ...]:
    """argparse type for comma-separated whole numbers (the benchmark scripts use it)."""
    items = whole_numbers(text)
    if not items:
        raise argparse.ArgumentTypeError(f"{text!r}: write comma-separated whole numbers, e.g. 32,64,128")
    return items


def csv_list(text: str | None, what: str) -> tuple[str, ...] | None:
    if text is None:
        return None
    items = tuple(t.strip() for t in text.split(",") if t.strip())
    if not items:
        from ..errors import ConfigError

        raise ConfigError(f"--{what} needs at least one name (got {text!r}).")
    return items


def check_records_file(out: str | None) -> None:
    """--out of the commands that save records: refused before any work unless it names a .json or .csv file."""

    if out and not out.endswith((".json", ".csv")):
        raise ConfigError(f"--out must name a .json or .csv file (got {out!r}).")


def write_records(out: str, records: list[dict], columns: list[str]) -> None:
    from ..fileio import write_csv, write_json

    if out.endswith(".json"):
        write_json(out, records)
    else:
        write_csv(out, records, columns)
    print(f"wrote {out}")


def run_or_study(
    target: Path, on_run: Callable, done: Callable, on_study: Callable | None = None, baseline: str | None = None
) -> int:
    """Apply ``on_run`` to one run folder (then ``done(run_dir, result)``), or to every run of a study folder
    (``on_study`` instead where given) and rebuild its report."""
    from ..layout import RUNS_DIR, run_dirs_of

    if (target / RUNS_DIR).is_dir():
        from ..report.html import build_report

        run_dirs = run_dirs_of(target)
        if not run_dirs:
            raise ConfigError(f"{target} holds no run folders: run `cnnbench compare --out {target}` first.")
        if on_study is not None:
            on_study(target)
        else:
            for run_dir in run_dirs:
                on_run(run_dir)
        print(f"report: {build_report(target, baseline=baseline)}")
        return 0
    if not target.is_dir():
        raise ConfigError(f"{target} is not a folder: give a run folder (of `cnnbench train`) or a study folder.")
    done(target, on_run(target))
    return 0


def stopped_by(error: KeyboardInterrupt) -> str:
    """How an interrupted run was stopped, for its closing message."""
    import signal

    number = getattr(error, "signal_number", signal.SIGINT)
    return "terminated (SIGTERM)" if number == signal.SIGTERM else "interrupted"
