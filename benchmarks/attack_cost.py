"""What each attack costs per 1,000 images on this machine, for the run folders given.

    CNNBENCH_DATA=../shared/datasets python benchmarks/attack_cost.py RUN [RUN ...] [--images 200] [--device cpu]

Each attack runs alone through `cnnbench robustness` at eps 8/255 (0.3 for digits) on the same class-balanced test
images, no corruptions, no masking checks, and its time is read from robustness.json (timings.attack_s_by_attack).
FGSM and PGD attack every image; AutoAttack and Square attack only the images the model gets right, and their later
stages only the images still standing, so their cost is given per 1,000 images the model classified correctly, and
it depends on how robust the model is (a model that resists APGD-CE pays for APGD-T, FAB-T and Square too).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
from pathlib import Path

from cnnbench.analysis.robustness.evaluate import STANDARD_EPS, RobustnessConfig, run_robustness

ATTACKS = {  # name: (attack, PGD steps, PGD restarts)
    "FGSM": ("fgsm", None, 1),
    "PGD-10": ("pgd", 10, 1),
    "PGD-20x2": ("pgd", 20, 2),
    "AutoAttack (standard)": ("autoattack", None, 1),
    "Square alone (5,000 queries)": ("square", None, 1),
}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("runs", nargs="+", help="run folders with a checkpoint")
    p.add_argument("--images", type=int, default=200, help="class-balanced test images (default 200)")
    p.add_argument("--device", default="auto")
    p.add_argument("--attacks", default=",".join(ATTACKS), help="which of them, comma-separated (default all)")
    args = p.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, device {args.device}, {args.images} images")
    print("| run | attack | images attacked | seconds | seconds per 1,000 attacked images | top-1 after |")
    print("|---|---|---|---|---|---|")
    for run in map(Path, args.runs):
        with tempfile.TemporaryDirectory() as tmp:  # the run folder's own robustness files stay as they were
            copy = Path(tmp) / run.name
            shutil.copytree(run, copy, ignore=shutil.ignore_patterns("robustness.*"))
            natural = json.loads((copy / "config.json").read_text()).get("dataset") != "mnist"
            for label in args.attacks.split(","):
                attack, steps, restarts = ATTACKS[label]
                cfg = RobustnessConfig(
                    corruptions=(),
                    attacks=(attack,),
                    eps=STANDARD_EPS[natural],
                    limit_test=args.images,
                    device=args.device,
                    pgd_steps=steps,
                    pgd_restarts=restarts,
                    masking_checks=False,
                )
                r = run_robustness(copy, cfg, log=lambda _: None)
                seconds = r["timings"]["attack_s_by_attack"][attack]
                attacked = r["images"] if attack in ("fgsm", "pgd") else round(r["clean_top1"] * r["images"])
                after = next(iter(r["adversarial"][attack].values()))
                print(
                    f"| {run.name} | {label} | {attacked} | {seconds:.1f} | {1000 * seconds / max(attacked, 1):.0f} "
                    f"| {after:.1%} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
