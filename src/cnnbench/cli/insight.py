"""`cnnbench insight`: what a trained run learned (a run or a study)."""

from __future__ import annotations

from pathlib import Path

from ..analysis.insight.evaluate import LANDSCAPES, InsightConfig
from .common import device_option, run_or_study


def add_parser(sub) -> None:
    insight = InsightConfig()  # the defaults, shown in --help as they are
    ins = sub.add_parser(
        "insight",
        help="what a trained run learned: filters, feature maps, Grad-CAM, CKA, loss landscape (a run or a study)",
    )
    ins.set_defaults(func=run)
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
    device_option(ins)


def run(args) -> int:
    from ..analysis.insight.evaluate import InsightConfig, check_insight_config, run_insight, study_insight

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
    return run_or_study(
        Path(args.target),
        lambda run_dir: run_insight(run_dir, cfg),
        _insight_done,
        on_study=lambda study: study_insight(study, cfg),
    )


def _insight_done(run_dir: Path, result: dict) -> None:
    print(f"wrote {run_dir / 'insight'} (Grad-CAM at {result['gradcam_layer']}); pictures: cnnbench report {run_dir}")
    for note in result["notes"]:
        print(f"  note: {note}")
