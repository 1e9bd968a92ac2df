"""What a real scheduler costs per cell: a grid of tiny cells through `--launcher local`, `slurm` (a real
`sbatch`, e.g. the one-node cluster of scripts/slurm-local.sh) and `ray` (a head started apart with `ray start`),
each launcher in turn in one call, so the numbers share a machine and a moment.

Per launcher: the study's wall time, and per cell the time from being queued (compare hands it over) to being
started (the cell's process runs cnnbench, before its data loads): the launcher's own overhead. The first
`parallel` cells start at once, so their median is pure submission-to-start latency; later ones also wait for a
free slot.

    sudo scripts/slurm-local.sh start && ray start --head --num-cpus 2
    CNNBENCH_DATA=../shared/datasets python benchmarks/cluster_overhead.py --cells 8
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cnnbench.engine.runtime import cpu_name
from cnnbench.launch import events

TINY = ["--models", "vgg11_bn", "--datasets", "mnist_demo", "--epochs", "1", "--limit-train", "64"]
TINY += ["--limit-test", "32", "--batch-size", "32", "--width", "0.0625", "--precise-bn", "0", "--no-dynamics"]


def run(launcher: list[str], cells: int, out: Path) -> dict:
    seeds = ",".join(map(str, range(cells)))
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "cnnbench", "compare", *TINY, "--seeds", seeds, *launcher, "--out", str(out)],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(launcher)} failed:\n{done.stdout}\n{done.stderr}")
    journal = events.read(out)
    queued = {e["cell"]: e["time"] for e in journal if e["event"] == "queued"}
    started = {}
    for e in journal:
        if e["event"] == "started":
            started.setdefault(e["cell"], e["time"])
    waits = sorted(started[c] - queued[c] for c in started)
    return {"wall": wall, "waits": waits}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--cells", type=int, default=8)
    p.add_argument("--parallel", type=int, default=2, help="cells at once: workers, Slurm CPUs, Ray CPUs")
    args = p.parse_args()
    launchers = {"local": ["--launcher", "local", "--workers", str(args.parallel)]}
    if shutil.which("sbatch"):
        launchers["slurm"] = ["--launcher", "slurm", "--wait", "--cpus-per-run", "1", "--mem-per-run", "1"]
    if shutil.which("ray"):
        launchers["ray"] = ["--launcher", "ray", "--ray-address", "auto", "--cpus-per-run", "1"]
    print(f"{args.cells} tiny cells (vgg11_bn at 1/16 width, 64 images, 1 epoch), {args.parallel} at once")
    print(f"machine: {cpu_name()} ({os.cpu_count()} cores); {time.strftime('%Y-%m-%d')}")
    print("| launcher | study wall time | queued -> started, first cells (median) | all cells (median, max) |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, flags in launchers.items():
            got = run(flags, args.cells, Path(tmp) / name)
            first = statistics.median(got["waits"][: args.parallel])
            print(
                f"| {name} | {got['wall']:.1f} s | {first:.1f} s | "
                f"{statistics.median(got['waits']):.1f} s, {max(got['waits']):.1f} s |"
            )


if __name__ == "__main__":
    main()
