"""What several commands share: option builders, list parsing, records files, run-or-study targets."""

from __future__ import annotations

import argparse
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
    """Options that map one-to-one onto TrainConfig fields; unset ones keep the config file's or default value.
    Each help text ends with the field's default, read from TrainConfig so that it cannot drift."""
    from ..config import (
        COMPILE_MODES,
        DECAY_TARGETS,
        DEVICES,
        LR_UPDATES,
        OPTIMIZERS,
        PRECISIONS,
        SCHEDULES,
        TrainConfig,
    )
    from ..models import VARIANTS

    defaults = TrainConfig()

    def option(flag: str, help: str, **kwargs) -> None:
        field = flag.lstrip("-").replace("-", "_")
        shown = shown_default(field, getattr(defaults, field))
        if kwargs.pop("boolean", False):
            bool_flag(p, flag.lstrip("-"), f"{help}; default {shown}")
        else:
            p.add_argument(flag, default=argparse.SUPPRESS, help=f"{help}; default {shown}", **kwargs)

    p.add_argument(
        "--config",
        "--recipe",
        metavar="FILE",
        help="YAML or JSON file of training options, such as a published script's recipe (recipes/); flags override it",
    )
    option(
        "--variant",
        "paper: as in the original tables; small: CIFAR-style stem/head; auto: small for inputs <= 64 px",
        choices=VARIANTS,
    )
    option("--width", "every layer's channels times this (0.25: a quarter as wide; 1: as published)", type=float)
    option("--epochs", "passes over the training data", type=int)
    option("--batch-size", "images per step (per process under torchrun)", type=int)
    option("--lr", "peak learning rate", type=float)
    option("--optimizer", "sgd, adam or adamw", choices=OPTIMIZERS)
    option("--momentum", "SGD momentum", type=float)
    option("--nesterov", "SGD with Nesterov momentum (--no-nesterov: plain momentum)", boolean=True)
    option("--schedule", "learning-rate schedule", choices=SCHEDULES)
    option("--warmup-fraction", "share of steps warming up (onecycle, cosine)", type=float)
    option("--lr-update", "move the learning rate after every step or once per epoch", choices=LR_UPDATES)
    option("--weight-decay", "L2 penalty (decoupled for adamw)", type=float)
    option("--decay", "weights: decay conv/linear weights only; all: every parameter", choices=DECAY_TARGETS)
    option("--label-smoothing", "cross-entropy label smoothing", type=float)
    option("--augment", "random crop, plus flips for natural images", boolean=True)
    option("--crop-padding", "pixels the random crop may shift by", type=int)
    option(
        "--cutout",
        "side in pixels of a square blanked at a random place in every training image",
        type=int,
        metavar="PIXELS",
    )
    option(
        "--ema",
        "evaluate a moving average of the weights with this decay per step (e.g. 0.999)",
        type=float,
        metavar="DECAY",
    )
    option("--seed", "seeds weights, shuffling and augmentation", type=int)
    option("--deterministic", "deterministic kernels: bit-identical reruns on CPU", boolean=True)
    option("--precision", "auto: bf16 where the hardware runs it fast", choices=PRECISIONS)
    option("--device", "auto: a CUDA GPU, else an Apple GPU (mps), else the CPU", choices=DEVICES)
    option("--channels-last", "NHWC memory format for convolutions", boolean=True)
    option(
        "--compile",
        "torch.compile the model (before the first epoch, timed as compile_s; eager if it fails)",
        boolean=True,
    )
    option(
        "--compile-mode",
        "reduce-overhead captures CUDA graphs (small batches without launch overhead)",
        choices=COMPILE_MODES,
    )
    option("--threads", "CPU threads for PyTorch", type=int)
    option("--data-dir", "data root")
    option("--download", "let torchvision download missing data sets", boolean=True)
    option("--limit-train", "class-balanced slice of the training split (images)", type=int)
    option("--limit-test", "class-balanced slice of the test split (images)", type=int)
    option("--val-split", "training images held out for validation (class-balanced)", type=int)
    option(
        "--test-split",
        "share of each class held out for testing, for an image folder of class folders only "
        "(fixed seed: the same images for every model)",
        type=float,
        metavar="FRACTION",
    )
    option("--pad-to", "zero-pad smaller images to this size", type=int)
    option("--resize", "resize images (bilinear) to this square size first", type=int)
    option("--eval-batch-size", "images per evaluation batch", type=int)
    option("--check-every", "steps between checks that the loss is finite (each waits for a GPU)", type=int)
    option(
        "--precise-bn",
        "before each evaluation, recompute batch-norm statistics on this many training images "
        "(at most a tenth of them)",
        type=int,
        metavar="IMAGES",
    )
    option(
        "--pretrained",
        "start from weights and replace the classifier: imagenet (torchvision's weights for the "
        "paper variants; ImageNet normalisation) or PATH (a state_dict file, a cnnbench checkpoint or run folder)",
        metavar="imagenet|PATH",
    )
    option(
        "--backbone-lr-scale",
        "with --pretrained: the pretrained body learns at --lr times this, the new classifier at --lr",
        type=float,
    )
    option("--freeze-backbone", "with --pretrained: train the new classifier only (a linear probe)", boolean=True)
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
