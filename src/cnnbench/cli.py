"""Command line: parses, validates and calls the library; user mistakes become one-paragraph errors (exit 2)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from .errors import CnnbenchError
from .version import __version__

EXIT_USAGE = 2


def _bool_flag(parser: argparse.ArgumentParser, name: str, help: str) -> None:
    parser.add_argument(
        f"--{name}",
        dest=name.replace("-", "_"),
        action=argparse.BooleanOptionalAction,
        default=argparse.SUPPRESS,
        help=help,
    )


def _tensorboard_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tensorboard",
        metavar="DIR",
        default=None,
        help="also log metrics, per-layer dynamics and "
        "weight/gradient histograms for TensorBoard into DIR/<run> (needs the tensorboard package)",
    )


def add_train_options(p: argparse.ArgumentParser) -> None:
    """Options that map one-to-one onto TrainConfig fields; unset ones keep the config file's or default value.
    Each help text ends with the field's default, read from TrainConfig so that it cannot drift."""
    from .config import COMPILE_MODES, DEVICES, OPTIMIZERS, PRECISIONS, SCHEDULES, TrainConfig
    from .models import VARIANTS

    defaults = TrainConfig()

    def option(flag: str, help: str, **kwargs) -> None:
        field = flag.lstrip("-").replace("-", "_")
        shown = _shown_default(field, getattr(defaults, field))
        if kwargs.pop("boolean", False):
            _bool_flag(p, flag.lstrip("-"), f"{help}; default {shown}")
        else:
            p.add_argument(flag, default=argparse.SUPPRESS, help=f"{help}; default {shown}", **kwargs)

    p.add_argument("--config", metavar="FILE", help="YAML or JSON file of training options (flags override it)")
    option(
        "--variant",
        "paper: as in the original tables; small: CIFAR-style stem/head; auto: small for inputs <= 64 px",
        choices=VARIANTS,
    )
    option("--epochs", "passes over the training data", type=int)
    option("--batch-size", "images per step (per process under torchrun)", type=int)
    option("--lr", "peak learning rate", type=float)
    option("--optimizer", "sgd (Nesterov momentum), adam or adamw", choices=OPTIMIZERS)
    option("--momentum", "SGD momentum", type=float)
    option("--schedule", "learning-rate schedule", choices=SCHEDULES)
    option("--warmup-fraction", "share of steps warming up (onecycle, cosine)", type=float)
    option("--weight-decay", "L2 on conv/linear weights only (not biases or norm parameters)", type=float)
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
    option("--device", "auto: cuda if present", choices=DEVICES)
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


# What a None default means, per field, for people reading --help or the README.
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


def _shown_default(field: str, value) -> str:
    if value is None:
        return NONE_MEANS.get(field, "none")
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def training_options_markdown() -> str:
    """The README's table of training options, generated from the parser (a test keeps the README equal to it)."""
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


def build_parser() -> argparse.ArgumentParser:
    from .config import COMPILE_MODES

    parser = argparse.ArgumentParser(
        prog="cnnbench", description="Train, evaluate and compare CNNs on image classification data."
    )
    parser.add_argument("--version", action="version", version=f"cnnbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train one model on one data set into a run folder")
    train.add_argument("--model", default=argparse.SUPPRESS, help="a name from `cnnbench models` (default vgg16_bn)")
    train.add_argument(
        "--dataset",
        default=argparse.SUPPRESS,
        help="a name from `cnnbench datasets` or imagefolder:PATH (default mnist)",
    )
    train.add_argument("--out", required=True, help="run folder to write")
    train.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    _bool_flag(
        train,
        "dynamics",
        "record per-layer weight, gradient and update norms, dead ReLU channels and "
        "first-layer filters while training (dynamics.csv; default off for train)",
    )
    train.set_defaults(dynamics=False)
    _tensorboard_option(train)
    add_train_options(train)

    compare = sub.add_parser("compare", help="run a study (models x data sets x seeds) and write its report")
    compare.add_argument(
        "--preset",
        choices=("demo", "paper", "modern", "fast"),
        default=None,
        help="demo (the default without --models/--datasets): offline, minutes on a CPU; "
        "paper: the study's setup; modern: small-image variants, a good recipe; fast: large "
        "batches, cutout and weight averaging, for GPUs",
    )
    compare.add_argument("--models", default=None, help="comma-separated model names, e.g. vgg16_bn,resnet18")
    compare.add_argument("--datasets", default=None, help="comma-separated data sets, e.g. mnist,cifar10")
    compare.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    compare.add_argument("--out", default=None, help="study folder (default studies/<preset>)")
    compare.add_argument(
        "--robustness",
        action="store_true",
        help="after training, measure every run under corruptions and attacks (`cnnbench robustness` defaults)",
    )
    compare.add_argument(
        "--insight",
        action="store_true",
        help="after training, write every run's filters, feature "
        "maps, Grad-CAM, CKA and loss landscape (`cnnbench insight` defaults)",
    )
    compare.add_argument(
        "--with-scratch",
        action="store_true",
        help="with --pretrained: also train every model "
        "from scratch, so that the report compares both starts (the variant column says which)",
    )
    _bool_flag(compare, "dynamics", "record per-layer weight dynamics while training (default on for studies)")
    compare.set_defaults(dynamics=True)
    _tensorboard_option(compare)
    add_train_options(compare)

    prof = sub.add_parser("profile", help="parameters, MACs/FLOPs, memory and measured throughput of models")
    prof.add_argument("--models", default="vgg16_bn,resnet18", help="comma-separated model names")
    prof.add_argument("--input", default="3x32x32", help="C x H x W of one image (default 3x32x32)")
    prof.add_argument("--num-classes", type=int, default=10)
    prof.add_argument("--batch-size", type=int, default=128)
    prof.add_argument("--variant", choices=("paper", "small", "auto"), default="auto")
    prof.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto")
    prof.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    prof.add_argument("--train", action="store_true", help="also time training steps and measure peak memory")
    prof.add_argument("--repeats", type=int, default=5, help="timed iterations (median reported)")
    _bool_flag(prof, "channels-last", "NHWC memory format for convolutions (default on, as in train)")
    prof.set_defaults(channels_last=True)
    prof.add_argument("--compile", action="store_true", help="time torch.compile'd steps (compiling timed apart)")
    prof.add_argument(
        "--compile-mode",
        choices=COMPILE_MODES,
        default="default",
        help="torch.compile mode; reduce-overhead captures CUDA graphs (default: default)",
    )
    prof.add_argument("--out", default=None, help="save records to FILE.json or FILE.csv")

    report = sub.add_parser("report", help="rebuild a study's report from its run folders")
    report.add_argument("study_dir")
    report.add_argument(
        "--baseline",
        default=None,
        help="the model corruption errors (mCE) are relative to (default the study's first model)",
    )

    from .analysis.insight.evaluate import LANDSCAPES, InsightConfig
    from .config import DEVICES

    insight = InsightConfig()  # the defaults, shown in --help as they are
    ins = sub.add_parser(
        "insight",
        help="what a trained run learned: filters, feature maps, Grad-CAM, CKA, loss landscape (a run or a study)",
    )
    ins.add_argument(
        "target",
        metavar="RUN_DIR|STUDY_DIR",
        help="a run folder, or a study folder (every run in it, plus CKA between the models)",
    )
    ins.add_argument(
        "--layer",
        default=insight.layer,
        help="Grad-CAM layer, a module name such as layer4 or "
        "features.42 (default: the last layer whose output is larger than 1x1)",
    )
    ins.add_argument(
        "--landscape",
        default=insight.landscape,
        choices=LANDSCAPES,
        help="loss-landscape slices: 1d "
        "(a random direction and the init -> trained line), 2d (adds a grid: hundreds of passes), none; "
        f"default {insight.landscape}",
    )
    ins.add_argument(
        "--images", type=int, default=insight.images, help=f"test images per Grad-CAM panel (default {insight.images})"
    )
    ins.add_argument(
        "--cka-images",
        type=int,
        default=insight.cka_images,
        help=f"class-balanced test images for CKA (default {insight.cka_images})",
    )
    ins.add_argument(
        "--landscape-images",
        type=int,
        default=insight.landscape_images,
        help=f"training images the landscape's loss is computed on (default {insight.landscape_images})",
    )
    ins.add_argument(
        "--seed", type=int, default=insight.seed, help=f"seeds the random directions (default {insight.seed})"
    )
    ins.add_argument("--device", default=insight.device, choices=DEVICES)

    ev = sub.add_parser("evaluate", help="confusion matrix, per-class metrics and misclassified images of a run")
    ev.add_argument("run_dir", help="a run folder written by `cnnbench train`")
    ev.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))

    pred = sub.add_parser(
        "predict", help="class names and probabilities for image files, with a run's own preprocessing"
    )
    pred.add_argument("run_dir", metavar="RUN_DIR", help="a finished run folder (with its checkpoint)")
    pred.add_argument("images", metavar="IMAGE|FOLDER", nargs="+", help="image files, or folders searched recursively")
    pred.add_argument("--top-k", type=int, default=5, help="classes shown per image (default 5)")
    pred.add_argument("--out", default=None, help="also write the predictions to FILE.csv")
    pred.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))

    exp = sub.add_parser(
        "export",
        help="a trained run as an ONNX file or a torch.export program, with its preprocessing in a JSON file beside it",
    )
    exp.add_argument("run_dir", metavar="RUN_DIR", help="a finished run folder (with its checkpoint)")
    exp.add_argument("--format", default="onnx", choices=("onnx", "pt2"), help="onnx (default) or pt2 (torch.export)")
    exp.add_argument("--out", default=None, help="file to write (default RUN_DIR/model.onnx or model.pt2)")

    rob = sub.add_parser(
        "robustness", help="accuracy under common corruptions and adversarial attacks (a run or a study)"
    )
    rob.add_argument("target", metavar="RUN_DIR|STUDY_DIR", help="a run folder, or a study folder (every run in it)")
    rob.add_argument(
        "--corruptions",
        default="all",
        help="all (default), none, or comma-separated names "
        "(CIFAR-10-C's 15 for colour images, an MNIST-C-style set for grey ones)",
    )
    rob.add_argument("--severities", default="1-5", help="severities 1-5: a range 1-5 or a list 1,3,5 (default 1-5)")
    rob.add_argument("--attacks", default="fgsm,pgd", help="fgsm,pgd (default), one of them, or none")
    rob.add_argument(
        "--eps",
        default=None,
        help="L-inf radii in pixels of [0, 1], e.g. 1/255,2/255 or 0.1,0.2 "
        "(default 1,2,4,8/255 for natural images, 0.1,0.2,0.3 for digits)",
    )
    rob.add_argument(
        "--limit-test",
        type=int,
        default=None,
        help="class-balanced test images per cell (default 1000 on CPU, all on a GPU)",
    )
    rob.add_argument("--seed", type=int, default=0, help="seeds the corruptions and PGD's random start (default 0)")
    rob.add_argument(
        "--baseline",
        default=None,
        help="study only: the model the corruption errors are relative to (default the study's first model)",
    )
    rob.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))

    models = sub.add_parser(
        "models",
        help="list the model zoo; --layers: one model layer by layer; --table: the papers' configuration tables",
    )
    models.add_argument("pattern", nargs="?", help="shell-style filter, e.g. 'vgg*'; with --layers, a model name")
    models.add_argument(
        "--params", action="store_true", help="also count parameters (10 classes, 3x32x32, both variants)"
    )
    models.add_argument(
        "--layers",
        action="store_true",
        help="one row per layer (type, output shape, parameters, "
        "MACs, activation memory at batch 1) with stage subtotals, for the model named",
    )
    models.add_argument(
        "--table",
        choices=("vgg", "resnet"),
        default=None,
        help="the VGG (Table 1) or ResNet "
        "(Table 2) configuration table in Markdown, with parameters and MACs at 224 px, 1000 classes",
    )
    models.add_argument(
        "--variant", choices=("paper", "small", "auto"), default="auto", help="with --layers (default auto)"
    )
    models.add_argument("--input", default="3x32x32", help="with --layers: C x H x W of one image (default 3x32x32)")
    models.add_argument("--num-classes", type=int, default=10, help="with --layers (default 10)")
    models.add_argument("--out", default=None, help="with --layers: also save the rows to FILE.csv or FILE.json")

    ds = sub.add_parser("datasets", help="list data sets and whether they are found locally")
    ds.add_argument("--data-dir", default=None, help="data root to look in")
    return parser


def train_config_from_args(args: argparse.Namespace):
    from .config import FIELD_NAMES, TrainConfig, config_from_dict, load_config_file
    from .fileio import read_json

    base = TrainConfig()
    saved = Path(args.out) / "config.json"
    if args.resume and saved.exists():
        base = config_from_dict(read_json(saved), where=str(saved))
    if args.config:
        base = load_config_file(args.config, base)
    overrides = {k: v for k, v in vars(args).items() if k in FIELD_NAMES}
    return config_from_dict(overrides, base, where="The command line")


def training_callbacks(dynamics: bool, tensorboard: str | None = None) -> list:
    from .engine import ConsoleProgress

    callbacks = [ConsoleProgress()]
    recorder = None
    if dynamics:
        from .analysis.insight.dynamics import WeightDynamics

        recorder = WeightDynamics()
        callbacks.append(recorder)
    if tensorboard:
        from .analysis.insight.tensorboard import TensorBoardLogger

        callbacks.append(TensorBoardLogger(tensorboard, recorder))
    return callbacks


def cmd_train(args) -> int:
    from .engine import fit

    cfg = train_config_from_args(args)
    try:
        fit(cfg, args.out, resume=args.resume, callbacks=training_callbacks(args.dynamics, args.tensorboard))
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: finished epochs are saved in {args.out}; continue with "
            f"`cnnbench train --out {args.out} --resume`.",
            file=sys.stderr,
        )
        return 130
    return 0


def _whole_numbers(text: str) -> tuple[int, ...]:
    """Comma-separated whole numbers such as 32,64,128; () when the text is not that."""
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        return ()


def int_list(text: str) -> tuple[int, ...]:
    """argparse type for comma-separated whole numbers (the benchmark scripts use it)."""
    items = _whole_numbers(text)
    if not items:
        raise argparse.ArgumentTypeError(f"{text!r}: write comma-separated whole numbers, e.g. 32,64,128")
    return items


def _csv_list(text: str | None, what: str) -> tuple[str, ...] | None:
    if text is None:
        return None
    items = tuple(t.strip() for t in text.split(",") if t.strip())
    if not items:
        from .errors import ConfigError

        raise ConfigError(f"--{what} needs at least one name (got {text!r}).")
    return items


def study_spec_from_args(args: argparse.Namespace):
    from .config import FIELD_NAMES, read_config_mapping
    from .errors import ConfigError
    from .study import resolve_study

    seeds = _whole_numbers(args.seeds)
    if not seeds:
        raise ConfigError(f"--seeds must be comma-separated whole numbers, e.g. 0,1,2 (got {args.seeds!r}).")
    return resolve_study(
        args.preset,
        _csv_list(args.models, "models"),
        _csv_list(args.datasets, "datasets"),
        seeds,
        read_config_mapping(args.config) if args.config else {},
        {k: v for k, v in vars(args).items() if k in FIELD_NAMES},
        where_file=f"Config file {args.config}",
        with_scratch=args.with_scratch,
    )


def cmd_compare(args) -> int:
    from .study import run_study

    spec = study_spec_from_args(args)
    spec.runs()  # validates every run of the grid before the first epoch
    out = Path(args.out or f"studies/{spec.preset or 'study'}")
    print(
        f"study {out}: models {', '.join(spec.models)} x data sets {', '.join(spec.datasets)} x seeds "
        f"{', '.join(map(str, spec.seeds))}" + (f" (preset {spec.preset})" if spec.preset else "")
    )
    try:
        from .analysis.insight.evaluate import InsightConfig
        from .analysis.robustness.evaluate import RobustnessConfig

        report = run_study(
            spec,
            out,
            callbacks=lambda: training_callbacks(args.dynamics, args.tensorboard),
            robustness=RobustnessConfig() if args.robustness else None,
            insight=InsightConfig() if args.insight else None,
        )
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: finished runs and epochs are saved; run the same command again to continue {out}.",
            file=sys.stderr,
        )
        return 130
    print(f"report: {report}")
    return 0


def cmd_profile(args) -> int:
    from .analysis.profile import PROFILE_COLUMNS, ProfileConfig, parse_input, profile_model
    from .errors import ConfigError
    from .models.registry import check_model_name

    models = _csv_list(args.models, "models")
    for m in models:
        check_model_name(m)
    if args.batch_size < 1 or args.repeats < 1 or args.num_classes < 1:
        raise ConfigError("--batch-size, --repeats and --num-classes must be positive.")
    _check_records_file(args.out)
    cfg = ProfileConfig(
        parse_input(args.input),
        args.num_classes,
        args.batch_size,
        args.variant,
        args.precision,
        args.device,
        args.train,
        repeats=args.repeats,
        channels_last=args.channels_last,
        compile=args.compile,
        compile_mode=args.compile_mode,
    )
    header = (
        f"{'model':<14} {'variant':<7} {'params':>12} {'MACs':>10} {'FLOPs':>10} {'infer img/s':>12} "
        f"{'train img/s':>12} {'peak MB':>9}"
    )
    print(
        f"input {args.input}, batch {args.batch_size}, {args.num_classes} classes; FLOPs = 2 x MACs "
        f"(torch.utils.flop_counter)"
    )
    print(header)
    records = []
    for m in models:
        r = profile_model(m, cfg)
        records.append(r)
        fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
        print(
            f"{r['model']:<14} {r['variant']:<7} {r['params']:>12,} {r['macs'] / 1e9:>9.3f}G {r['flops'] / 1e9:>9.3f}G "
            f"{r['infer_images_per_s']:>12.0f} {fmt(r['train_images_per_s'], '>12.0f')} "
            f"{fmt(r['peak_memory_mb'], '>9.0f')}"
        )
    for r in records:
        for what in ("infer", "train"):
            if r.get(f"{what}_compile_s") is not None:
                print(f"{r['model']}: compiling for {what} took {r[f'{what}_compile_s']:.1f}s (not in the rates)")
            if r.get(f"{what}_compile_error"):
                print(
                    f"{r['model']}: torch.compile failed for {what} ({r[f'{what}_compile_error']}); eager rates shown"
                )
    if records:
        print(
            f"device {records[0]['device']}, precision {records[0]['precision']}, "
            f"{'channels-last' if cfg.channels_last else 'contiguous'} memory format"
        )
    if args.out:
        _write_records(args.out, records, PROFILE_COLUMNS)
    return 0


def cmd_report(args) -> int:
    from .report.html import build_report

    print(f"report: {build_report(args.study_dir, baseline=args.baseline)}")
    return 0


def cmd_evaluate(args) -> int:
    from .engine.evaluate_run import evaluate_run
    from .report.plots import misclassified_figure

    r = evaluate_run(args.run_dir, args.device, draw=misclassified_figure)
    print(
        f"{args.run_dir} (epoch {r['epoch']}): test loss {r['loss']:.4f}, top-1 {r['top1']:.2%}, top-5 "
        f"{r['top5']:.2%}, "
        f"macro F1 {r['macro_f1']:.4f}, {r['misclassified']} of {r['test_images']} misclassified"
    )
    width = max(len(c["class"]) for c in r["per_class"])
    print(f"{'class':<{width}}  precision  recall  f1      support")
    for c in r["per_class"]:
        print(f"{c['class']:<{width}}  {c['precision']:.4f}     {c['recall']:.4f}  {c['f1']:.4f}  {c['support']}")
    print("wrote evaluation.json, confusion_matrix.csv, per_class.csv, misclassified.csv, misclassified.png")
    return 0


def _fraction(text: str) -> float:
    from .errors import ConfigError

    try:
        num, _, den = text.partition("/")
        return float(num) / float(den) if den else float(num)
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"--eps takes numbers or fractions such as 0.1 or 2/255 (got {text!r}).") from None


def _severities(text: str) -> tuple[int, ...]:
    from .errors import ConfigError

    low, dash, high = text.partition("-")
    try:
        values = tuple(range(int(low), int(high) + 1)) if dash else tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        values = ()
    if not values or any(v not in range(1, 6) for v in values):
        raise ConfigError(
            f"--severities must be severities from 1 to 5, as a range 1-5 or a list 1,3,5 (got {text!r})."
        )
    return values


def robustness_config_from_args(args):
    from .analysis.robustness.evaluate import RobustnessConfig

    corruptions = (
        None
        if args.corruptions == "all"
        else ()
        if args.corruptions == "none"
        else _csv_list(args.corruptions, "corruptions")
    )
    attacks = () if args.attacks == "none" else _csv_list(args.attacks, "attacks")
    eps = None if args.eps is None else tuple(_fraction(t.strip()) for t in args.eps.split(",") if t.strip())
    return RobustnessConfig(
        corruptions, _severities(args.severities), attacks, eps, args.limit_test, args.seed, args.device
    )


def cmd_robustness(args) -> int:
    from .analysis.robustness.evaluate import check_config, run_robustness

    cfg = check_config(robustness_config_from_args(args))
    return _run_or_study(
        Path(args.target), lambda run_dir: run_robustness(run_dir, cfg), _robustness_done, baseline=args.baseline
    )


def _robustness_done(run_dir: Path, r: dict) -> None:
    print(
        f"wrote {run_dir / 'robustness.json'} and robustness.csv ({r['images']} images per cell; {r['corruption_set']})"
    )
    for name, why in r["substitutes"].items():
        print(f"  substitute in {name}: {why}")


def cmd_insight(args) -> int:
    from .analysis.insight.evaluate import InsightConfig, check_insight_config, run_insight, study_insight

    cfg = check_insight_config(
        InsightConfig(
            layer=args.layer,
            images=args.images,
            cka_images=args.cka_images,
            landscape=args.landscape,
            landscape_images=args.landscape_images,
            seed=args.seed,
            device=args.device,
        )
    )
    return _run_or_study(
        Path(args.target),
        lambda run_dir: run_insight(run_dir, cfg),
        _insight_done,
        on_study=lambda study: study_insight(study, cfg),
    )


def _insight_done(run_dir: Path, result: dict) -> None:
    print(
        f"wrote {run_dir / 'insight'} (Grad-CAM at {result['gradcam_layer']}); `cnnbench report` on a study draws them"
    )
    for note in result["notes"]:
        print(f"  note: {note}")


def _run_or_study(
    target: Path, on_run: Callable, done: Callable, on_study: Callable | None = None, baseline: str | None = None
) -> int:
    """Apply ``on_run`` to one run folder (then ``done(run_dir, result)``), or to every run of a study folder
    (``on_study`` instead where given) and rebuild its report."""
    from .errors import ConfigError
    from .layout import run_dirs_of

    if (target / "runs").is_dir():
        from .report.html import build_report

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


def cmd_models(args) -> int:
    import torch

    from .models import create_model, list_models

    if args.table:
        from .analysis.paper_tables import paper_table

        print(paper_table(args.table), end="")
        return 0
    if args.layers:
        return _print_layers(args)
    names = list_models(args.pattern)
    if not names:
        print(f"no model matches {args.pattern!r}", file=sys.stderr)
        return EXIT_USAGE
    if args.params:
        print(f"{'model':<14} {'params (small)':>15} {'params (paper)':>15}")
        for n in names:
            with torch.device("meta"):  # shapes only: counting needs no memory or initialisation
                counts = [sum(p.numel() for p in create_model(n, variant=v).parameters()) for v in ("small", "paper")]
            print(f"{n:<14} {counts[0]:>15,} {counts[1]:>15,}")
    else:
        print("\n".join(names))
    return 0


def _print_layers(args) -> int:
    from .analysis.architecture import LAYER_COLUMNS, grand_total, model_layer_table, stage_totals
    from .analysis.profile import parse_input
    from .errors import ConfigError

    if not args.pattern:
        raise ConfigError("--layers needs a model name, for example `cnnbench models resnet18 --layers`.")
    _check_records_file(args.out)
    if args.num_classes < 1:
        raise ConfigError(f"--num-classes must be positive (got {args.num_classes}).")
    shape = parse_input(args.input)
    variant, rows = model_layer_table(args.pattern, args.variant, shape, args.num_classes)
    print(
        f"{args.pattern} ({variant}), input {args.input}, {args.num_classes} classes; activation = the layer's "
        "output at batch 1, float32 (in-place layers reuse their input's)"
    )
    print(f"{'layer':<24} {'type':<18} {'output':<16} {'params':>12} {'MACs':>14} {'activation':>11}")
    for r in rows:
        shown = "x".join(map(str, r.output_shape))
        print(
            f"{r.name:<24} {r.type:<18} {shown:<16} {r.params:>12,} {r.macs:>14,} "
            f"{r.activation_bytes / 1024:>8,.0f} KiB"
        )
    print(f"\n{'stage':<10} {'works at':<9} {'output':<16} {'params':>12} {'MACs':>14} {'activation':>11}")
    for s in stage_totals(rows):
        print(
            f"{s['stage']:<10} {s['works_at'] or '-':<9} {s['output_shape']:<16} {s['params']:>12,} {s['macs']:>14,} "
            f"{s['activation_bytes'] / 1024:>8,.0f} KiB"
        )
    total = grand_total(rows)
    print(
        f"{'total':<10} {'':<9} {'':<16} {total['params']:>12,} {total['macs']:>14,} "
        f"{total['activation_bytes'] / 1024:>8,.0f} KiB"
    )
    if args.out:
        _write_records(args.out, [r.to_dict() for r in rows], LAYER_COLUMNS)
    return 0


def _check_records_file(out: str | None) -> None:
    """--out of the commands that save records: refused before any work unless it names a .json or .csv file."""
    from .errors import ConfigError

    if out and not out.endswith((".json", ".csv")):
        raise ConfigError(f"--out must name a .json or .csv file (got {out!r}).")


def _write_records(out: str, records: list[dict], columns: list[str]) -> None:
    from .fileio import write_csv, write_json

    if out.endswith(".json"):
        write_json(out, records)
    else:
        write_csv(out, records, columns)
    print(f"wrote {out}")


def cmd_datasets(args) -> int:
    from .data.sources import SOURCES, locate, resolve_data_root

    root = resolve_data_root(args.data_dir)
    print(f"data root: {root}")
    for name, (desc, _) in SOURCES.items():
        where = locate(name, args.data_dir)
        status = f"found: {where}" if where else "not found (downloaded on first use when online)"
        print(f"{name:<14} {desc:<48} {status}")
    print(
        f"{'imagefolder:PATH':<14} a folder or .tar of <class>/* (a test split is held out: --test-split), or "
        f"of train/<class>/* and test/<class>/*"
    )
    return 0


def cmd_predict(args) -> int:
    from .engine.predict import image_files, load_trained, predict_files
    from .engine.runtime import resolve_device
    from .errors import ConfigError
    from .fileio import write_csv

    if args.top_k < 1:
        raise ConfigError(f"--top-k must be at least 1 (got {args.top_k}).")
    if args.out and not args.out.endswith(".csv"):
        raise ConfigError(f"--out must name a .csv file (got {args.out!r}).")
    device = resolve_device(args.device)
    model, prep = load_trained(Path(args.run_dir), device)
    files, problems = image_files(args.images)
    rows, failed = predict_files(model, prep, files, device, args.top_k)
    k = min(args.top_k, len(prep.classes))
    for r in rows:
        print(f"{r['file']}: " + ", ".join(f"{r[f'class_{i}']} {r[f'prob_{i}']:.1%}" for i in range(1, k + 1)))
    for p in problems + failed:
        print(f"cnnbench: skipped {p}", file=sys.stderr)
    if args.out and rows:
        columns = ["file"] + [c for i in range(1, k + 1) for c in (f"class_{i}", f"prob_{i}")]
        write_csv(args.out, rows, columns)
        print(f"wrote {args.out}")
    if not rows:
        raise ConfigError(
            f"No image could be predicted ({len(problems + failed)} skipped, listed above). Give image "
            "files (PNG, JPEG, ...) or folders holding them."
        )
    return 0


def cmd_export(args) -> int:
    from .engine.export import export_run

    model_file, meta = export_run(args.run_dir, args.format, args.out)
    print(f"wrote {model_file} and {meta} (classes, input shape, mean and std: the model takes normalised images)")
    return 0


COMMANDS = {
    "train": cmd_train,
    "compare": cmd_compare,
    "report": cmd_report,
    "profile": cmd_profile,
    "evaluate": cmd_evaluate,
    "predict": cmd_predict,
    "export": cmd_export,
    "robustness": cmd_robustness,
    "insight": cmd_insight,
    "models": cmd_models,
    "datasets": cmd_datasets,
}


def exit_code_of(command: Callable[[], int | None], prog: str = "cnnbench") -> int:
    """Run ``command``; a user mistake (CnnbenchError) becomes its one-paragraph message and exit code 2."""
    try:
        return command() or 0
    except CnnbenchError as e:
        # Under torchrun every process meets the same mistake: one message (rank 0's) is enough.
        if os.environ.get("RANK", "0") == "0":
            print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_USAGE


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return exit_code_of(lambda: COMMANDS[args.command](args))


if __name__ == "__main__":
    sys.exit(main())
