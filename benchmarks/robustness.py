"""What a default robustness run costs on this machine: corruption generation against evaluation, and wall time.

    CNNBENCH_DATA=../shared/datasets python benchmarks/robustness.py studies/modern-mnist/runs/vgg16_bn-mnist-seed0 \
        studies/modern-mnist/runs/resnet18-mnist-seed0

Runs `cnnbench robustness` with its defaults on each run folder (that writes the folder's robustness.json) and
prints one markdown row per run: images/s generating corruptions and evaluating them (ratio in the same run,
so shared-machine noise largely cancels), the share of the corruption part spent generating, the attack time
and the wall time of the whole default run.
"""

from __future__ import annotations

import argparse
import sys
import time

from cnnbench.analysis.robustness.evaluate import RobustnessConfig, run_robustness
from cnnbench.cli import exit_code_of


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("runs", nargs="+", help="run folders with a checkpoint")
    p.add_argument("--limit-test", type=int, default=None, help="images per cell (default: cnnbench's default)")
    args = p.parse_args()
    print(
        "| run | images per cell | generate img/s | evaluate img/s | generate / evaluate | share generating "
        "| corruptions | attacks | wall time |\n|---|---|---|---|---|---|---|---|---|"
    )
    for run in args.runs:
        start = time.perf_counter()
        r = run_robustness(run, RobustnessConfig(limit_test=args.limit_test), log=lambda _: None)
        wall = time.perf_counter() - start
        t = r["timings"]
        cells = sum(len(s) for s in r["corruptions"].values())
        generated = cells * r["images"]
        gen_rate = generated / max(t["corrupt_s"], 1e-9)
        eval_rate = (generated + r["images"]) / max(t["evaluate_s"], 1e-9)
        print(
            f"| {r['model']} on {r['dataset']} | {r['images']} | {gen_rate:.0f} | {eval_rate:.0f} | "
            f"{gen_rate / eval_rate:.2f} | {t['corrupt_s'] / max(t['corrupt_s'] + t['evaluate_s'], 1e-9):.0%} | "
            f"{(t['corrupt_s'] + t['evaluate_s']) / 60:.1f} min | {t['attack_s'] / 60:.1f} min | {wall / 60:.1f} min |",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(exit_code_of(main, "robustness.py"))
