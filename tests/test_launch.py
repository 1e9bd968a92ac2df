"""Studies bigger than one process: locks, the events journal, status, and the local, Slurm (submitit) and Ray
launchers on this CPU, with no cluster."""

import json
import os
import subprocess
import sys
import time

import pytest

from cnnbench.cli import main
from cnnbench.config import TrainConfig
from cnnbench.launch import events
from cnnbench.launch.cell import train_cell
from cnnbench.launch.launchers import LaunchConfig
from cnnbench.launch.lock import LOCK_FILE, LockedError, RunLock, read_lock
from cnnbench.launch.status import status_text, study_cells
from cnnbench.layout import EVENTS_JSONL
from cnnbench.study import StudySpec, run_study
from tests.conftest import TINY_MODEL, TINY_MODEL_WIDE

TINY = TrainConfig(epochs=1, limit_train=64, limit_test=32, batch_size=16, lr=0.05, precise_bn=0, deterministic=True)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_lock_keeps_a_second_worker_off_and_a_dead_owners_lock_is_taken_over(tmp_path):
    run = tmp_path / "run"
    said = []
    with RunLock(run, log=said.append, heartbeat=0.05) as first:
        with pytest.raises(LockedError, match="is being trained by"):
            RunLock(run).acquire()
        started = read_lock(run)["heartbeat"]
        time.sleep(0.2)
        assert read_lock(run)["heartbeat"] > started  # the owner keeps its lock fresh
        assert first.took_over is None
    assert not (run / LOCK_FILE).exists()  # released
    (run / LOCK_FILE).write_text(
        json.dumps({"host": __import__("socket").gethostname(), "pid": dead_pid(), "heartbeat": time.time()})
    )
    with RunLock(run, log=said.append) as second:
        assert second.took_over is not None and "taking over a stale lock" in said[-1]
    (run / LOCK_FILE).write_text(json.dumps({"host": "elsewhere", "pid": 1, "heartbeat": time.time() - 3600}))
    with RunLock(run, log=said.append):  # another host, silent for an hour: stale by its heartbeat
        pass


def test_the_journal_keeps_whole_lines_from_several_processes(tmp_path):
    code = (
        "import sys; from cnnbench.launch import events\n"
        "for i in range(200): events.record(sys.argv[1], 'cell' + sys.argv[2], 'epoch', epoch=i)\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path), str(k)]) for k in range(3)]
    for p in procs:
        assert p.wait() == 0
    lines = (tmp_path / EVENTS_JSONL).read_text().splitlines()
    assert len(lines) == 600 and all(json.loads(line)["event"] == "epoch" for line in lines)
    assert {c: e["epoch"] for c, e in events.latest_by_cell(tmp_path).items()} == {
        "cell0": 199,
        "cell1": 199,
        "cell2": 199,
    }


def test_an_inline_study_journals_every_cell_and_status_says_finished(tmp_path, capsys):
    out = tmp_path / "study"
    run_study(StudySpec((TINY_MODEL, TINY_MODEL_WIDE), ("mnist_demo",), (0,), TINY), out, log=lambda _: None)
    kinds = [(e["cell"], e["event"]) for e in events.read(out)]
    for cell in (f"{TINY_MODEL}-mnist_demo-seed0", f"{TINY_MODEL_WIDE}-mnist_demo-seed0"):
        assert [k for c, k in kinds if c == cell] == ["queued", "started", "epoch", "finished"]
    assert main(["status", str(out)]) == 0
    text = capsys.readouterr().out
    assert "2 runs: 2 finished, 0 running, 0 pending, 0 failed" in text and "test top-1" in text
    assert main(["status", str(out), "--json"]) == 0
    assert {c["state"] for c in json.loads(capsys.readouterr().out)} == {"finished"}


def test_status_names_running_failed_and_pending_cells(tmp_path):
    cells = [{"name": n, "config": {"epochs": 4}} for n in ("a-run", "b-run", "c-run")]
    command = "cnnbench compare --models a,b,c --out study"
    (tmp_path / "study.json").write_text(json.dumps({"cells": cells, "command": command}))
    (tmp_path / "runs" / "a-run").mkdir(parents=True)
    with RunLock(tmp_path / "runs" / "a-run"):
        for epoch in (1, 2):
            events.record(tmp_path, "a-run", "epoch", epoch=epoch, epochs=4, images_per_s=100.0, epoch_time_s=30.0)
        events.record(tmp_path, "b-run", "failed", reason="TrainingError: the training loss became nan")
        states = {c.name: c for c in study_cells(tmp_path)}
        assert states["a-run"].state == "running" and states["a-run"].epoch == 2 and states["a-run"].eta_s == 60
        assert states["b-run"].state == "failed" and "nan" in states["b-run"].reason
        assert states["c-run"].state == "pending"
        text = status_text(tmp_path, list(states.values()))
    assert "epoch 2 of 4, 100 images/s, about 60 s left" in text and f"retry: `{command}`" in text
    assert main(["status", str(tmp_path)]) == 1  # not every cell finished


def test_a_killed_workers_stale_lock_is_taken_over_and_the_run_resumes(tmp_path):
    study = tmp_path / "study"
    cfg = TINY.replace(model=TINY_MODEL, dataset="mnist_demo")
    run = study / "runs" / f"{TINY_MODEL}-mnist_demo-seed0"
    run.mkdir(parents=True)
    owner = {"host": __import__("socket").gethostname(), "pid": dead_pid(), "heartbeat": time.time()}
    (run / LOCK_FILE).write_text(json.dumps(owner))  # what a SIGKILLed worker leaves
    assert train_cell(study, cfg.to_dict(), log=lambda _: None) == "finished"
    assert [e["event"] for e in events.read(study)][:2] == ["takeover", "started"]
    assert not (run / LOCK_FILE).exists() and (run / "summary.json").exists()


def _summaries(out):
    return {
        p.parent.name: {
            k: v for k, v in json.loads(p.read_text()).items() if k in ("test_top1", "test_loss", "train_loss")
        }
        for p in sorted((out / "runs").glob("*/summary.json"))
    }


@pytest.mark.data
@pytest.mark.slow
def test_local_workers_give_the_summaries_inline_gives(tmp_path):
    """Two worker processes against one process: the same numbers for every cell (deterministic CPU runs, one
    thread each in both)."""
    spec = StudySpec(("vgg11_bn",), ("mnist_demo",), (0, 1), TINY.replace(threads=1))
    inline = run_study(spec, tmp_path / "inline", log=lambda _: None)
    local = run_study(spec, tmp_path / "local", log=lambda _: None, launch=LaunchConfig("local", workers=2))
    assert inline.exists() and local.exists()
    assert (
        _summaries(tmp_path / "inline") == _summaries(tmp_path / "local") and len(_summaries(tmp_path / "local")) == 2
    )


@pytest.mark.data
@pytest.mark.slow
def test_two_compare_commands_on_one_folder_train_each_cell_once(tmp_path):
    args = [
        "compare",
        "--models",
        "vgg11_bn",
        "--datasets",
        "mnist_demo",
        "--seeds",
        "0,1,2",
        "--epochs",
        "1",
        "--limit-train",
        "64",
        "--limit-test",
        "32",
        "--batch-size",
        "16",
        "--precise-bn",
        "0",
        "--threads",
        "1",
        "--out",
        str(tmp_path / "s"),
    ]
    procs = [
        subprocess.Popen([sys.executable, "-m", "cnnbench", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()
    started = [e["cell"] for e in events.read(tmp_path / "s") if e["event"] == "started"]
    assert sorted(started) == sorted(set(started)) and len(started) == 3  # each cell trained exactly once
    assert (tmp_path / "s" / "report.html").exists()


@pytest.mark.data
@pytest.mark.slow
def test_submitits_local_executor_runs_the_cells_and_a_preempted_cell_resumes(tmp_path):
    pytest.importorskip("submitit")
    from cnnbench.launch.launchers import Batch, Launched, SlurmCell, run_slurm

    out = tmp_path / "s"
    spec = StudySpec(("vgg11_bn",), ("mnist_demo",), (0,), TINY.replace(epochs=2))
    cfg = spec.runs()[0]
    # a preemption: the job is stopped after its first epoch; submitit calls checkpoint(), which requeues the cell
    with pytest.raises(KeyboardInterrupt):
        from tests.test_train import StopAfter

        train_cell(out, cfg.to_dict(), callbacks=[StopAfter(1)], log=lambda _: None)
    requeued = SlurmCell(str(out)).checkpoint(cfg.to_dict())
    assert requeued.function.study_dir == str(out) and requeued.args == (cfg.to_dict(),)
    (out / "study.json").write_text(
        json.dumps({"cells": [{"name": "vgg11_bn-mnist_demo-seed0", "config": cfg.to_dict()}]})
    )
    launched = run_slurm(Batch(out, [cfg], lambda _: None, LaunchConfig("slurm", wait=True, timeout_min=10)), "local")
    assert launched == Launched()
    run = out / "runs" / "vgg11_bn-mnist_demo-seed0"
    started = [e for e in events.read(out) if e["event"] == "started"]
    assert started[-1]["resumed"] is True and json.loads((run / "summary.json").read_text())["epochs"] == 2


@pytest.mark.data
@pytest.mark.slow
def test_ray_on_a_local_instance(tmp_path):
    ray = pytest.importorskip("ray")  # not in the dev extra: a 200 MB install for one test (docs/clusters.md says so)
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True)
    try:
        spec = StudySpec(("vgg11_bn",), ("mnist_demo",), (0,), TINY)
        report = run_study(spec, tmp_path / "s", log=lambda _: None, launch=LaunchConfig("ray", cpus_per_run=1))
        assert report.exists()
    finally:
        ray.shutdown()


@pytest.mark.parametrize("launcher, package", [("slurm", "submitit"), ("ray", "ray")])
def test_a_missing_extra_names_the_install_command(tmp_path, monkeypatch, capsys, launcher, package):
    monkeypatch.setitem(sys.modules, package, None)  # as if not installed
    args = ["compare", "--models", TINY_MODEL, "--datasets", "mnist_demo", "--epochs", "1", "--limit-train", "64"]
    assert main([*args, "--launcher", launcher, "--out", str(tmp_path / "s")]) == 2
    assert f"pip install 'cnnbench[{launcher}]'" in capsys.readouterr().err


def test_a_study_estimate_times_each_model_once(monkeypatch):
    """Before a study starts: each distinct model configuration timed once, its rate applied to every run of it."""
    import cnnbench.launch.estimate as estimate
    from cnnbench.analysis.profile import profile_model
    from cnnbench.data.loader import load_dataset

    timed = []

    def rate(cfg, data):
        timed.append(cfg.model)
        return 100.0 if cfg.model == TINY_MODEL else 50.0

    monkeypatch.setattr(estimate, "training_rate", rate)
    base = TrainConfig(dataset="mnist_demo", limit_train=200, epochs=2)
    data = {"mnist_demo": load_dataset("mnist_demo", options=base.data_options())}
    cells = [base.replace(model=m, seed=s) for m in (TINY_MODEL, TINY_MODEL_WIDE) for s in (0, 1)]
    seconds = estimate.estimate_training_seconds(cells, data)
    assert timed == [TINY_MODEL, TINY_MODEL_WIDE]
    assert seconds == pytest.approx(2 * 2 * 200 / 100 + 2 * 2 * 200 / 50)
    monkeypatch.undo()
    timed_calls = []
    monkeypatch.setattr(
        estimate, "profile_model", lambda name, cfg: timed_calls.append(cfg) or profile_model(name, cfg)
    )
    assert estimate.training_rate(base.replace(model=TINY_MODEL, batch_size=32), data["mnist_demo"]) > 0
    (cfg,) = timed_calls
    assert cfg.train and not cfg.infer and cfg.warmup == 0  # training steps only: no inference timing at start-up
    assert profile_model(TINY_MODEL, cfg)["infer_images_per_s"] is None


def test_compare_ends_by_printing_its_verdicts(tmp_path, capsys):
    """The terminal says what the report says: each pair's verdict with its test and its label, then the path."""
    args = ["compare", "--models", f"{TINY_MODEL},{TINY_MODEL_WIDE}", "--datasets", "mnist_demo", "--epochs", "1"]
    args += ["--limit-train", "64", "--limit-test", "32", "--batch-size", "16", "--precise-bn", "0", "--no-dynamics"]
    assert main([*args, "--out", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    findings = out[out.index("findings:") :]
    assert "Protocol declared" in findings and "Confirmatory:" in findings and "McNemar p" in findings
    assert findings.rstrip().endswith(f"report: {tmp_path / 's' / 'report.html'}")
    assert (tmp_path / "s" / "findings.md").read_text().startswith("mnist_demo:\n- Protocol declared")


def test_every_slurm_option_becomes_its_sbatch_line(tmp_path, monkeypatch):
    """Partition, account, QOS, time, GPUs, CPUs, memory, the array's concurrency and any other option, as
    submitit's own Slurm executor writes them into the sbatch script (nothing is submitted: a stand-in `srun` on
    the PATH lets submitit build the executor on a machine without Slurm)."""
    submitit = pytest.importorskip("submitit")
    stand_in = tmp_path / "bin" / "srun"
    stand_in.parent.mkdir()
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    stand_in.chmod(0o755)
    monkeypatch.setenv("PATH", f"{stand_in.parent}{os.pathsep}{os.environ['PATH']}")
    from cnnbench.launch.launchers import slurm_parameters

    cfg = LaunchConfig(
        "slurm",
        slurm_partition="gpu",
        slurm_account="proj",
        slurm_qos="high",
        mem_gb=32,
        gpus_per_run=1,
        cpus_per_run=8,
        timeout_min=120,
        max_parallel=2,
        slurm_options={"constraint": "a100"},
    )
    executor = submitit.AutoExecutor(folder=tmp_path / "slurm", cluster="slurm")
    executor.update_parameters(**slurm_parameters(cfg))
    executor._executor.parameters["map_count"] = 8  # as map_array sets it for 8 cells
    script = executor._executor._make_submission_file_text("python -c pass", "uid")
    for line in ("--partition=gpu", "--account=proj", "--qos=high", "--time=120", "--gpus-per-node=1"):
        assert f"#SBATCH {line}\n" in script, line
    for line in ("--cpus-per-task=8", "--mem=32GB", "--array=0-7%2", "--constraint=a100"):
        assert f"#SBATCH {line}\n" in script, line
    assert f"--error={tmp_path / 'slurm'}/" in script  # the logs go to the study's slurm/ folder
