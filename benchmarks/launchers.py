"""A 4-cell grid of small runs, inline (one run after another, all cores) against `--launcher local --workers 2`
(two processes, the cores shared out): the study's wall time each way, and their ratio, in one call.

    CNNBENCH_DATA=../shared/datasets python benchmarks/launchers.py
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from cnnbench.cli import exit_code_of
from cnnbench.config import TrainConfig
from cnnbench.engine.runtime import cpu_name
from cnnbench.launch.launchers import LaunchConfig
from cnnbench.study import StudySpec, run_study


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", default="vgg11_bn,resnet18")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--limit-train", type=int, default=1024)
    args = p.parse_args()
    base = TrainConfig(epochs=1, limit_train=args.limit_train, limit_test=500, batch_size=64, lr=0.05, precise_bn=0)
    spec = StudySpec(tuple(args.models.split(",")), ("mnist_demo",), tuple(int(s) for s in args.seeds.split(",")), base)
    quiet = lambda _text: None  # noqa: E731
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, launch in (("inline", LaunchConfig()), ("local --workers 2", LaunchConfig("local", workers=2))):
            start = time.perf_counter()
            run_study(spec, Path(tmp) / name.replace(" ", "_"), log=quiet, launch=launch)
            times[name] = time.perf_counter() - start
    print(
        f"{len(spec.runs())} cells ({args.models} x seeds {args.seeds}, mnist_demo, {args.limit_train} images, "
        f"1 epoch), CPU: {cpu_name()} ({os.cpu_count()} cores)"
    )
    print("| launcher | study wall time | ratio to inline |\n|---|---|---|")
    for name, t in times.items():
        print(f"| {name} | {t:.1f} s | {times['inline'] / t:.2f}x |")


if __name__ == "__main__":
    raise SystemExit(exit_code_of(main, "launchers.py"))
