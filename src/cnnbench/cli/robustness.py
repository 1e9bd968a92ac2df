"""`cnnbench robustness`: accuracy under corruptions and attacks (a run or a study)."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from .common import csv_list, device_option, run_or_study


def add_parser(sub) -> None:
    rob = sub.add_parser(
        "robustness", help="accuracy under common corruptions and adversarial attacks (a run or a study)"
    )
    rob.set_defaults(func=run)
    rob.add_argument("target", metavar="RUN_DIR|STUDY_DIR", help="a run folder, or a study folder (every run in it)")
    rob.add_argument(
        "--corruptions",
        default="all",
        help="all (default), none, or comma-separated names "
        "(CIFAR-10-C's 15 for colour images, an MNIST-C-style set for grey ones)",
    )
    rob.add_argument("--severities", default="1-5", help="severities 1-5: a range 1-5 or a list 1,3,5 (default 1-5)")
    rob.add_argument(
        "--attacks",
        default="fgsm,pgd",
        help="comma-separated: fgsm, pgd, autoattack (AutoAttack's standard suite: APGD-CE, APGD-T, FAB-T, Square; "
        "needs cnnbench[attacks]), square (the black-box Square alone), or none (default fgsm,pgd)",
    )
    rob.add_argument(
        "--eps",
        default=None,
        help="L-inf radii in pixels of [0, 1], e.g. 1/255,2/255 or 0.1,0.2 "
        "(default 1,2,4,8/255 for natural images, 0.1,0.2,0.3 for digits; autoattack and square: RobustBench's "
        "8/255 and 0.3)",
    )
    rob.add_argument(
        "--limit-test",
        type=int,
        default=None,
        help="class-balanced test images per cell (default 1000 on CPU, all on a GPU)",
    )
    rob.add_argument("--seed", type=int, default=0, help="seeds the corruptions and PGD's random start (default 0)")
    rob.add_argument(
        "--pgd-steps", type=int, default=None, help="PGD iterations (default 10 for natural images, 40 for digits)"
    )
    rob.add_argument(
        "--pgd-restarts", type=int, default=1, help="PGD random starts; robust only if every one fails (default 1)"
    )
    rob.add_argument(
        "--no-masking-checks",
        dest="masking_checks",
        action="store_false",
        help="skip the extra attacks that check for gradient masking (a large eps, 3x the PGD steps)",
    )
    rob.add_argument(
        "--baseline",
        default=None,
        help="study only: the model the corruption errors are relative to (default the study's first model)",
    )
    device_option(rob)


def _fraction(text: str) -> float:

    try:
        num, _, den = text.partition("/")
        return float(num) / float(den) if den else float(num)
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"--eps takes numbers or fractions such as 0.1 or 2/255 (got {text!r}).") from None


def _severities(text: str) -> tuple[int, ...]:

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
    from ..analysis.robustness.evaluate import RobustnessConfig

    corruptions = (
        None
        if args.corruptions == "all"
        else ()
        if args.corruptions == "none"
        else csv_list(args.corruptions, "corruptions")
    )
    attacks = () if args.attacks == "none" else csv_list(args.attacks, "attacks")
    eps = None if args.eps is None else tuple(_fraction(t.strip()) for t in args.eps.split(",") if t.strip())
    return RobustnessConfig(
        corruptions,
        _severities(args.severities),
        attacks,
        eps,
        args.limit_test,
        args.seed,
        args.device,
        pgd_steps=args.pgd_steps,
        pgd_restarts=args.pgd_restarts,
        masking_checks=args.masking_checks,
    )


def run(args) -> int:
    from ..analysis.robustness.evaluate import check_config, run_robustness

    cfg = check_config(robustness_config_from_args(args))

    def whole_study(study: Path) -> None:
        from ..analysis.robustness.transfer import measure_runs
        from ..layout import run_dirs_of

        measure_runs(study, run_dirs_of(study), cfg)

    return run_or_study(
        Path(args.target),
        lambda run_dir: run_robustness(run_dir, cfg),
        _robustness_done,
        on_study=whole_study,
        baseline=args.baseline,
    )


def _robustness_done(run_dir: Path, r: dict) -> None:
    print(
        f"wrote {run_dir / 'robustness.json'} and robustness.csv ({r['images']} images per cell; {r['corruption_set']})"
    )
    for name, why in r["substitutes"].items():
        print(f"  substitute in {name}: {why}")
    print(f"pictures (heat map, accuracy against eps): cnnbench report {run_dir}")
