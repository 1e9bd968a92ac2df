"""How long a fair verdict takes at demo scale: the demo study with every model tuned by the same search, then three
test seeds, timed end to end (tuning, test-seed runs, report) beside the estimate the study prints before it starts.

    python benchmarks/fair_verdict_speed.py            # the demo preset, tuned: 4 trials of lr per model, 3 seeds

The target: at most 5 minutes on 2 CPU cores in bf16. Prints one JSON line (wall seconds, the printed estimate, the
chosen settings) and keeps the study folder (--out) for a look at its report.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

COMMAND = [
    "compare",
    "--preset",
    "demo",
    "--tune",
    "lr=0.02:0.2:log",
    "--trials",
    "4",
    "--val-split",
    "1000",
    "--seeds",
    "1,2,3",
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench-runs/fair-verdict-demo")
    p.add_argument("--extra", default="", help="further compare options, e.g. '--precision fp32'")
    args = p.parse_args()
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)  # a timing of the whole study: nothing may be skipped as finished
    command = [sys.executable, "-m", "cnnbench", *COMMAND, *args.extra.split(), "--out", str(out)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"the study failed:\n{done.stdout}\n{done.stderr}")
    estimate = next((line for line in done.stdout.splitlines() if "tuning trial run(s), about" in line), None)
    study = json.loads((out / "study.json").read_text())
    print(done.stdout)
    print(
        json.dumps(
            {
                "command": "cnnbench " + " ".join(COMMAND + args.extra.split()),
                "wall_s": round(wall, 1),
                "within_5_min": wall <= 300,
                "estimate_printed": estimate,
                "chosen": study["tuning"]["chosen"],
                "machine": platform.processor() or platform.machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
