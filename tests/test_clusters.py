"""Studies on real schedulers: a one-node Slurm cluster (scripts/slurm-local.sh, which .ci/run starts) through
submitit's real SlurmExecutor and `sbatch`, and a Ray cluster whose head runs as its own process (`ray start`).
Marked `cluster`: skipped, with the reason, where no Slurm controller answers or Ray is not installed."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from cnnbench.launch import events
from cnnbench.launch.status import study_cells

SLURM_UP = shutil.which("sinfo") is not None and (
    subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True).stdout.strip()
    in ("idle", "mix", "alloc")
)
needs_slurm = pytest.mark.skipif(not SLURM_UP, reason="no Slurm controller answers: scripts/slurm-local.sh start")
pytestmark = [pytest.mark.cluster, pytest.mark.slow]

TINY = ["--datasets", "mnist_demo", "--limit-train", "1024", "--limit-test", "64", "--batch-size", "32"]
TINY += ["--width", "0.25", "--precise-bn", "0", "--no-dynamics", "--cpus-per-run", "1"]


def cnnbench(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cnnbench", *args], capture_output=True, text=True, timeout=timeout, env=os.environ
    )


def wait_until(check, timeout: float = 600, every: float = 1.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {check.__doc__ or check}")


def slurm_jobs() -> list[str]:
    """This user's job ids that are running now."""
    out = subprocess.run(["squeue", "-h", "-t", "R", "-o", "%i"], capture_output=True, text=True).stdout
    return out.split()


@needs_slurm
def test_a_study_on_real_slurm_with_status_a_requeue_and_a_second_command(tmp_path):
    """Four cells as a job array through sbatch: status follows them, one running job is requeued by the scheduler
    and resumes from its checkpoint, a second `compare` while they run trains nothing twice, and the last cell
    writes the report."""
    out = tmp_path / "study"
    args = ["compare", "--models", "vgg11_bn,resnet18", "--seeds", "0,1", "--epochs", "4", *TINY]
    args += ["--launcher", "slurm", "--mem-per-run", "2", "--max-parallel", "2", "--out", str(out)]
    first = cnnbench(*args)
    assert first.returncode == 0, first.stderr
    assert "submitted 4 runs as job array" in first.stdout

    def one_running_after_an_epoch():
        """a cell that finished an epoch and is still running"""
        epochs = {e["cell"] for e in events.read(out) if e["event"] == "epoch" and e["epoch"] == 1}
        running = {c.name for c in study_cells(out) if c.state == "running"}
        return sorted(epochs & running)

    cell = wait_until(one_running_after_an_epoch)[0]
    states = {c.state for c in study_cells(out)}
    assert "running" in states and states <= {"running", "pending", "finished"}
    job = _job_of_cell(out, cell)
    assert job in slurm_jobs()
    subprocess.run(["scontrol", "requeue", job], check=True)  # what a preempting job does to it
    second = cnnbench(*args)  # the same study again while its jobs run: nothing is trained twice
    assert second.returncode == 0, second.stderr
    script = next((out / "slurm").rglob("*_submission.sh")).read_text()
    assert "#SBATCH --mem=2GB" in script and "%2\n" in script  # memory per run, two cells at once

    def all_finished():
        """every cell finished"""
        return all(c.state == "finished" for c in study_cells(out)) and (out / "report.html").exists()

    wait_until(all_finished, timeout=900, every=2)
    journal = events.read(out)
    finished = [e["cell"] for e in journal if e["event"] == "finished"]
    assert sorted(finished) == sorted(set(finished)) and len(finished) == 4  # each cell finished once
    started = [e for e in journal if e["event"] == "started" and e["cell"] == cell]
    assert len(started) >= 2 and started[-1]["resumed"] is True  # requeued: resumed from its run folder
    summary = json.loads((out / "runs" / cell / "summary.json").read_text())
    assert summary["epochs"] == 4 and len((out / "runs" / cell / "metrics.csv").read_text().splitlines()) == 5


def _job_of_cell(study, cell: str) -> str | None:
    """The Slurm job training ``cell``, from the events journal (each event names the job it came from)."""
    for e in reversed(events.read(study)):
        if e["event"] == "started" and e["cell"] == cell:
            return e.get("slurm_job")
    return None


@needs_slurm
def test_a_failing_cell_on_slurm_names_its_job_and_log(tmp_path):
    out = tmp_path / "study"
    args = ["compare", "--models", "vgg11_bn", "--seeds", "0", "--epochs", "1", *TINY]
    args = [a if a != "0.25" else "100000" for a in args]  # a width no machine holds: refused inside the job
    done = cnnbench(*args, "--launcher", "slurm", "--wait", "--out", str(out))
    assert done.returncode == 1, done.stdout + done.stderr
    said = done.stdout + done.stderr
    assert "vgg11_bn-mnist_demo-seed0: failed" in said and "needs at least" in said
    assert "job " in said and ".err" in said  # the job and its log file, to read the whole story


@pytest.fixture
def ray_head():
    """A Ray head as its own process, the way a cluster runs one, stopped afterwards."""
    if shutil.which("ray") is None:
        pytest.skip("Ray is not installed: pip install 'cnnbench[ray]'")
    started = subprocess.run(
        ["ray", "start", "--head", "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert started.returncode == 0, started.stderr
    try:
        yield
    finally:
        subprocess.run(["ray", "stop", "--force"], capture_output=True, timeout=120)


def test_a_study_on_a_ray_cluster_survives_a_killed_worker(tmp_path, ray_head):
    """`--launcher ray --ray-address auto` against a head started apart; a worker process killed mid-cell is
    retried by Ray and resumes from the cell's checkpoint."""
    out = tmp_path / "study"
    args = ["compare", "--models", "vgg11_bn", "--seeds", "0,1", "--epochs", "3", *TINY]
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnbench", *args, "--launcher", "ray", "--ray-address", "auto", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def a_worker_after_an_epoch():
        """a Ray worker that finished an epoch"""
        return next((e for e in events.read(out) if e["event"] == "epoch" and e["epoch"] == 1), None)

    victim = wait_until(a_worker_after_an_epoch)
    os.kill(victim["pid"], signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 0, stdout + stderr
    journal = events.read(out)
    started = [e for e in journal if e["event"] == "started" and e["cell"] == victim["cell"]]
    assert len(started) >= 2 and started[-1]["resumed"] is True
    assert all(c.state == "finished" for c in study_cells(out)) and (out / "report.html").exists()
