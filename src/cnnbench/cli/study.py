"""`cnnbench compare` (a study: models x data sets x seeds, then its report) and `cnnbench report`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import (
    add_train_options,
    bool_flag,
    csv_list,
    stopped_by,
    tensorboard_option,
    training_callbacks,
    whole_numbers,
)


def add_parsers(sub) -> None:
    compare = sub.add_parser("compare", help="run a study (models x data sets x seeds) and write its report")
    compare.set_defaults(func=cmd_compare)
    compare.add_argument(
        "--preset",
        choices=("demo", "paper", "modern", "fast"),
        default=None,
        help="demo (the default without --models/--datasets): offline, minutes on a CPU; "
        "paper: the study's setup; modern: small-image variants, a good recipe; fast: large "
        "batches, cutout and weight averaging, for GPUs",
    )
    compare.add_argument(
        "--models", default=None, help="comma-separated model names, e.g. vgg16_bn,resnet18 (default: the preset's)"
    )
    compare.add_argument(
        "--datasets", default=None, help="comma-separated data sets, e.g. mnist,cifar10 (default: the preset's)"
    )
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
    tune = compare.add_argument_group("tuning every model with the same budget (a fair verdict)")
    tune.add_argument(
        "--tune",
        metavar="SPACE",
        default=None,
        help="tune each model on validation before its test seeds train, over SPACE, for example "
        "lr=0.01:0.3:log,weight_decay=1e-5:1e-3:log,label_smoothing=0,0.1,0.2 (low:high[:log] is a range, a,b,c a "
        "list; only lists: a grid); needs --val-split",
    )
    tune.add_argument("--trials", type=int, default=None, help="trials per model and data set (default 8)")
    tune.add_argument(
        "--tune-seed",
        type=int,
        default=None,
        help="the seed every trial trains with; never a test seed (default: the smallest seed not in --seeds)",
    )
    bool_flag(compare, "dynamics", "record per-layer weight dynamics while training (default on for studies)")
    compare.set_defaults(dynamics=True)
    tensorboard_option(compare)
    _launch_options(compare)
    add_train_options(compare)

    status = sub.add_parser("status", help="where every run of a study stands, wherever its runs train")
    status.set_defaults(func=cmd_status)
    status.add_argument("study_dir", metavar="STUDY_DIR")
    status.add_argument("--json", action="store_true", help="one JSON object per run, for scripts")
    status.add_argument("--watch", action="store_true", help="print the status every 10 s until every run ended")

    report = sub.add_parser(
        "report",
        help="a study's report from its run folders, or one run's report (curves, confusion, robustness, insight)",
    )
    report.set_defaults(func=cmd_report)
    report.add_argument("study_dir", metavar="STUDY_DIR|RUN_DIR", help="a study folder, or one run's folder")
    report.add_argument(
        "--baseline",
        default=None,
        help="the model corruption errors (mCE) are relative to (default the study's first model)",
    )


def study_spec_from_args(args: argparse.Namespace):
    from ..config import FIELD_NAMES, read_config_mapping
    from ..errors import ConfigError
    from ..study import resolve_study

    seeds = whole_numbers(args.seeds)
    if not seeds:
        raise ConfigError(f"--seeds must be comma-separated whole numbers, e.g. 0,1,2 (got {args.seeds!r}).")
    file_options = read_config_mapping(args.config) if args.config else {}
    tuning = _tuning_from(args, file_options if isinstance(file_options, dict) else {}, seeds)
    return resolve_study(
        args.preset,
        csv_list(args.models, "models"),
        csv_list(args.datasets, "datasets"),
        seeds,
        file_options,
        {k: v for k, v in vars(args).items() if k in FIELD_NAMES},
        where_file=f"Config file {args.config}",
        with_scratch=args.with_scratch,
        tuning=tuning,
    )


TUNING_KEYS = ("tune", "trials", "tune_seed")  # a study file may hold these beside training options
DEFAULT_TRIALS = 8


def _tuning_from(args: argparse.Namespace, file_options: dict, seeds):
    """The tuning phase the flags (or the study file's tune/trials/tune_seed keys, which they override) ask for;
    the file's keys are taken out of its training options."""
    from ..errors import ConfigError
    from ..tune import TuningSpec, default_seed, parse_space

    in_file = {k: file_options.pop(k) for k in TUNING_KEYS if k in file_options}
    space = args.tune if args.tune is not None else in_file.get("tune")
    trials = args.trials if args.trials is not None else in_file.get("trials")
    seed = args.tune_seed if args.tune_seed is not None else in_file.get("tune_seed")
    if space is None:
        if trials is not None or seed is not None:
            raise ConfigError("--trials and --tune-seed belong to a tuning phase: add --tune SPACE, or drop them.")
        return None
    for name, value in (("trials", trials), ("tune_seed", seed)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise ConfigError(f"{name} must be a whole number (got {value!r}).")
    return TuningSpec(
        parse_space(space),
        DEFAULT_TRIALS if trials is None else trials,
        default_seed(seeds) if seed is None else seed,
    )


def _launch_options(compare) -> None:
    from ..launch.launchers import LAUNCHERS, LaunchConfig

    d = LaunchConfig()
    group = compare.add_argument_group("launching the runs (a study bigger than one process)")
    group.add_argument(
        "--launcher",
        choices=tuple(LAUNCHERS),
        default=d.launcher,
        help="inline: one run after another here (default); local: --workers processes on this machine; slurm: a "
        "job array through submitit; ray: tasks on a Ray cluster",
    )
    group.add_argument("--workers", type=int, default=d.workers, help=f"local: processes (default {d.workers})")
    group.add_argument("--slurm-partition", default=None, help="slurm: the partition (default: the cluster's)")
    group.add_argument("--slurm-account", default=None, help="slurm: the account to charge (default: yours)")
    group.add_argument("--slurm-qos", default=None, help="slurm: the quality of service (default: the cluster's)")
    group.add_argument(
        "--mem-per-run", type=float, default=None, help="slurm: memory per run in GB (default: the cluster's)"
    )
    group.add_argument("--gpus-per-run", type=int, default=d.gpus_per_run, help="slurm: GPUs per run (default 0)")
    group.add_argument("--cpus-per-run", type=int, default=d.cpus_per_run, help="slurm, ray: CPUs per run (default 2)")
    group.add_argument(
        "--timeout-min",
        type=int,
        default=d.timeout_min,
        help="slurm: minutes per job before it is requeued (default 240)",
    )
    group.add_argument(
        "--max-parallel", type=int, default=d.max_parallel, help="slurm: array tasks at once (default 32)"
    )
    group.add_argument(
        "--slurm-option", action="append", default=[], metavar="KEY=VALUE", help="slurm: any other sbatch setting"
    )
    group.add_argument("--wait", action="store_true", help="slurm: follow the jobs until they end (default: return)")
    group.add_argument("--ray-address", default=d.ray_address, help="ray: auto, HOST:PORT or local (default auto)")


def launch_config_from_args(args):
    from ..errors import ConfigError
    from ..launch.launchers import LaunchConfig

    options = {}
    for item in args.slurm_option:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--slurm-option takes KEY=VALUE, such as qos=high (got {item!r}).")
        options[key.strip()] = value.strip()
    return LaunchConfig(
        launcher=args.launcher,
        workers=args.workers,
        slurm_partition=args.slurm_partition,
        slurm_account=args.slurm_account,
        slurm_qos=args.slurm_qos,
        mem_gb=args.mem_per_run,
        gpus_per_run=args.gpus_per_run,
        cpus_per_run=args.cpus_per_run,
        timeout_min=args.timeout_min,
        max_parallel=args.max_parallel,
        slurm_options=options,
        wait=args.wait,
        ray_address=args.ray_address,
    )


def cmd_status(args) -> int:
    import json

    from ..launch import events
    from ..launch.status import status_text, study_cells, watch

    study = Path(args.study_dir)
    journal = None if args.watch else events.scan(study)  # read once for the cells and the count of bad lines
    cells = watch(study) if args.watch else study_cells(study, journal)
    if args.json:
        print(json.dumps([c.to_dict() for c in cells], indent=2))
    elif not args.watch:
        print(status_text(study, cells, journal))
    return 0 if cells and all(c.state == "finished" for c in cells) else 1


def _command_line() -> str | None:
    """This invocation as a shell command, where it came from the cnnbench entry point (not from Python code)."""
    import shlex

    if Path(sys.argv[0]).name not in ("cnnbench", "__main__.py"):
        return None
    return "cnnbench " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def cmd_compare(args) -> int:
    from ..study import run_study

    spec = study_spec_from_args(args)
    spec.runs()  # validates every run of the grid before the first epoch
    out = Path(args.out or f"studies/{spec.preset or 'study'}")
    print(
        f"study {out}: models {', '.join(spec.models)} x data sets {', '.join(spec.datasets)} x seeds "
        f"{', '.join(map(str, spec.seeds))}" + (f" (preset {spec.preset})" if spec.preset else "")
    )
    try:
        from ..analysis.insight.evaluate import InsightConfig
        from ..analysis.robustness.evaluate import RobustnessConfig

        report = run_study(
            spec,
            out,
            callbacks=lambda: training_callbacks(args.dynamics, args.tensorboard),
            robustness=RobustnessConfig() if args.robustness else None,
            insight=InsightConfig() if args.insight else None,
            launch=launch_config_from_args(args),
            command=_command_line(),
        )
    except KeyboardInterrupt as e:
        print(
            f"\n{stopped_by(e)}: finished runs and epochs are saved; run the same command again to continue {out}.",
            file=sys.stderr,
        )
        return getattr(e, "exit_code", 130)
    if report is None:
        print(f"submitted; `cnnbench status {out}` follows the runs, and the last one to finish writes the report")
        return 0
    print_findings(out)
    print(f"report: {report}")
    return 0


def print_findings(study_dir: Path) -> None:
    """The study's findings (each pair's verdict with its test and its label, confirmatory or exploratory), as the
    report words them, wrapped for a terminal."""
    import textwrap

    from ..layout import FINDINGS_MD

    path = Path(study_dir) / FINDINGS_MD
    if not path.exists():
        return
    print("\nfindings:")
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("- "):
            print(textwrap.fill(line[2:], width=110, initial_indent="  - ", subsequent_indent="    "))
        elif line:
            print(line)
    print()


def cmd_report(args) -> int:
    from ..report.html import build_report

    if not Path(args.study_dir).is_dir():
        from ..errors import ConfigError

        raise ConfigError(f"{args.study_dir} is not a folder: give a study folder or a run folder.")
    print(f"report: {build_report(args.study_dir, baseline=args.baseline)}")
    return 0
