"""torchrun with 2 CPU processes (gloo): one run folder, and the accuracy of the same global batch in one process."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cnnbench import TrainConfig, fit

TORCHRUN = Path(sys.executable).parent / "torchrun"
# The same data, epochs and global batch (2 x 16 = 32) in both; per-rank BN statistics and a different batch
# order make the runs differ a little, so they must agree within 5 points of top-1.
TOLERANCE = 0.05


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.skipif(not TORCHRUN.exists() and shutil.which("torchrun") is None, reason="torchrun not installed")
def test_torchrun_two_processes_matches_single_process(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        str(TORCHRUN if TORCHRUN.exists() else "torchrun"),
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "cnnbench",
        "train",
        "--model",
        "vgg11_bn",
        "--dataset",
        "mnist",
        "--limit-train",
        "2000",
        "--limit-test",
        "500",
        "--batch-size",
        "16",
        "--lr",
        "0.01",
        "--epochs",
        "1",
        "--threads",
        "1",
        "--out",
        str(out),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp"]  # only rank 0 wrote
    assert result.stdout.count("done:") == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["environment"]["world_size"] == 2 and summary["train_images"] == 2000
    single = fit(
        TrainConfig(
            model="vgg11_bn", dataset="mnist", limit_train=2000, limit_test=500, batch_size=32, lr=0.01, epochs=1
        ),
        tmp_path / "single",
    )
    assert abs(summary["test_top1"] - single["test_top1"]) <= TOLERANCE, (summary["test_top1"], single["test_top1"])
    assert summary["test_top1"] > 0.8
