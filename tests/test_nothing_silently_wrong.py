"""Round two of the hostile user: two commands on one study folder, measurements of weights that have since
trained on, workers killed from outside, a launcher that is not there, journals with junk in them, absurd widths,
and advice that must point at the right command."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnbench.cli import main
from cnnbench.config import TrainConfig
from cnnbench.engine.train import fit
from cnnbench.errors import ConfigError
from cnnbench.launch import events
from cnnbench.launch.cell import finish_run_files
from cnnbench.launch.status import status_text, study_cells
from cnnbench.layout import EVENTS_JSONL
from tests.conftest import TINY_MODEL
from tests.test_train import StopAfter

SMALL = ["--limit-train", "300", "--limit-test", "100", "--batch-size", "32", "--width", "0.25", "--no-dynamics"]
SMALL += ["--threads", "1", "--precise-bn", "0"]


def cnnbench(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cnnbench", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.slow
@pytest.mark.data
def test_two_concurrent_compares_with_different_settings_never_mix_recipes(tmp_path):
    """The issue's case with two real processes: one asks for 1 epoch, the other for 2, on one --out. One of them
    must refuse (naming the other settings), and no comparison may hold runs of both recipes."""
    out = tmp_path / "conc"
    common = ["compare", "--models", "vgg11_bn,resnet18", "--datasets", "mnist_demo", *SMALL, "--out", str(out)]
    procs = [cnnbench(*common, "--epochs", "1")]
    time.sleep(1.0)  # the first one takes the first cell; the second meets it there or at the next
    procs.append(cnnbench(*common, "--epochs", "2"))
    answers = [p.communicate(timeout=900) for p in procs]
    codes = [p.returncode for p in procs]
    assert codes != [0, 0], answers  # never both "done": one of them met the other's runs
    refused = [err for (_, err), code in zip(answers, codes) if code != 0]
    assert any("other settings" in err for err in refused), refused
    assert not any("Traceback" in err for _, err in answers), answers
    study = json.loads((out / "study.json").read_text())
    asked = {c["name"]: c["config"]["epochs"] for c in study["cells"]}
    if (out / "comparison.csv").exists():  # whatever report exists holds only runs of the study's own settings
        with open(out / "comparison.csv", newline="") as f:
            models = [row["model"] for row in csv.DictReader(f)]
        for model in models:
            name = f"{model}-mnist_demo-seed0"
            trained = json.loads((out / "runs" / name / "summary.json").read_text())["epochs"]
            assert trained == asked[name], (model, trained, asked)


@pytest.mark.slow
@pytest.mark.data
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is a POSIX signal")
def test_a_sigkilled_local_worker_fails_only_its_own_cell_and_everyone_agrees(tmp_path):
    """A real SIGKILL to one of two local workers: its cell alone fails; the console, the journal and `status`
    count one failure; `compare` exits 1 naming it; running the command again resumes the killed cell."""
    out = tmp_path / "s"
    args = ["compare", "--models", "vgg11_bn", "--datasets", "mnist_demo", "--seeds", "0,1,2,3", "--epochs", "3"]
    args += [*SMALL, "--launcher", "local", "--workers", "2", "--out", str(out)]
    proc = cnnbench(*args)
    victim, deadline = None, time.time() + 600
    while victim is None:
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.1)
        for e in events.read(out):
            if e["event"] == "epoch" and e["pid"] != proc.pid:
                victim = e
                break
    os.kill(victim["pid"], signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 1, (stdout, stderr)
    killed = victim["cell"]
    said_failed = [line for line in stdout.splitlines() if ": failed (" in line]
    assert len(said_failed) == 1 and killed in said_failed[0] and "signal 9" in said_failed[0], stdout
    assert killed in stderr and "1 run(s) of the study failed" in stderr and "Traceback" not in stderr
    journal = [e for e in events.read(out) if e["event"] == "failed"]
    assert [e["cell"] for e in journal] == [killed]
    cells = {c.name: c for c in study_cells(out)}
    assert cells[killed].state == "failed" and sum(c.state == "finished" for c in cells.values()) == 3
    assert "4 runs: 3 finished, 0 running, 0 pending, 1 failed" in status_text(out, list(cells.values()))
    with open(out / EVENTS_JSONL, "ab") as f:  # junk and a duplicated line: the next command survives them
        f.write(b"\xff\xfe junk\n" + (out / EVENTS_JSONL).read_bytes().splitlines(keepends=True)[-1])
    again = cnnbench(*args)
    stdout, stderr = again.communicate(timeout=900)
    assert again.returncode == 0, stderr
    run = out / "runs" / killed
    assert (run / "misclassified.png").exists() and not (run / ".lock").exists()
    assert json.loads((run / "summary.json").read_text())["epochs"] == 3


@pytest.mark.data
def test_measurements_of_an_interrupted_run_are_marked_and_go_stale_when_it_resumes(tmp_path, capsys):
    """train -> interrupt -> robustness -> resume -> report: robustness.json names the epoch-1 weights, the
    command says first that the run is unfinished, and the finished run's report leaves the stale numbers out
    (and says so) until they are measured again."""
    cfg = TrainConfig(model=TINY_MODEL, dataset="mnist_demo", epochs=2, limit_train=128, limit_test=64, batch_size=32)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, run, callbacks=[StopAfter(1)])
    robustness = ["robustness", str(run), "--corruptions", "brightness", "--attacks", "none", "--no-masking-checks"]
    assert main(robustness) == 0
    first = capsys.readouterr().err.strip().splitlines()[0]
    assert "is unfinished" in first and "epoch 1 of 2" in first and "--resume" in first
    measured = json.loads((run / "robustness.json").read_text())
    assert measured["epoch"] == 1 and measured["weights"] == {"epoch": 1, "of_epochs": 2, "finished": False}
    assert main(["report", str(run)]) == 2  # an unfinished run: the advice is to finish it, not to compare
    assert f"cnnbench train --out {run} --resume" in capsys.readouterr().err
    fit(cfg, run, resume=True)
    finish_run_files(run)
    assert main(["report", str(run)]) == 0
    err = capsys.readouterr().err
    assert "robustness.json was measured on the weights of epoch 1, and the run has since trained to epoch 2" in err
    assert "Robustness left out, measured on weights these runs have trained past" in (run / "report.html").read_text()
    assert main(robustness) == 0 and "is unfinished" not in capsys.readouterr().err  # measured again, finished
    assert main(["report", str(run)]) == 0 and "measured on the weights" not in capsys.readouterr().err
    html = (run / "report.html").read_text()
    assert "Robustness left out" not in html and "Not measured yet" not in html


def test_slurm_without_sbatch_is_refused_before_anything_is_written(tmp_path, monkeypatch, capsys):
    pytest.importorskip("submitit")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no sbatch anywhere
    out = tmp_path / "s"
    code = main(
        ["compare", "--models", TINY_MODEL, "--datasets", "mnist_demo", "--launcher", "slurm", "--out", str(out)]
    )
    err = capsys.readouterr().err
    assert code == 2 and "needs Slurm's sbatch" in err and "--launcher local" in err
    assert not (out / "study.json").exists() and not (out / "slurm").exists()


def test_a_width_that_cannot_fit_is_refused_before_any_memory_is_taken(capsys):
    from cnnbench.models import create_model

    with pytest.raises(ConfigError, match=r"needs at least .* GiB to train"):
        create_model("vgg11_bn", width=1e6)
    assert sum(p.numel() for p in create_model("resnet18", width=1.5).parameters()) > 11e6  # wide, but it fits


@pytest.mark.data
def test_fine_tuning_from_a_run_of_the_same_width_works(tmp_path):
    cfg = TrainConfig(model="vgg11_bn", dataset="mnist_demo", epochs=1, limit_train=64, limit_test=32, batch_size=32)
    fit(cfg.replace(width=0.25), tmp_path / "narrow")
    summary = fit(cfg.replace(width=0.25, pretrained=str(tmp_path / "narrow")), tmp_path / "tuned")
    assert summary["epochs"] == 1
    with pytest.raises(ConfigError, match="ImageNet weights fit the network at its published width only"):
        fit(cfg.replace(width=0.25, pretrained="imagenet"), tmp_path / "imagenet")


def test_a_hold_out_says_what_it_held_out():
    from cnnbench.data.sources import held_out_text

    assert held_out_text(0.2, 2000, 10000) == "2000 of 10000 images held out as the test split (20% of each class)"
    few = held_out_text(0.2, 1000, 2000)  # 1,000 classes of 2 images: one of each is held out
    assert few.startswith("1000 of 2000 images held out") and "50%, not the 20% asked for" in few


CELLS = ["a-run", "b-run", "c-run"]


def _journal_lines(cell_events: list[tuple[str, str]]) -> list[bytes]:
    lines, t = [], 1000.0
    for cell, kind in cell_events:
        t += 1
        extra = {"epoch": 1, "epochs": 2, "images_per_s": 10.0, "epoch_time_s": 1.0} if kind == "epoch" else {}
        if kind == "failed":
            extra = {"reason": "TrainingError: the training loss became nan"}
        record = {"time": t, "host": "h", "pid": 1, "cell": cell, "event": kind, **extra}
        lines.append((json.dumps(record) + "\n").encode())
    return lines


JUNK = st.sampled_from(
    [b"\xff\xfe\x00binary\n", b'{"time": 1, "cell": "a-run", "ev\n', b"[1, 2, 3]\n", b"null\n", b'{"cell": 3}\n']
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    order=st.permutations(range(6)),
    junk=st.lists(st.tuples(st.integers(0, 6), JUNK), max_size=4),
    duplicate=st.integers(0, 5),
    cut=st.integers(0, 30),
)
def test_status_survives_a_damaged_journal_with_the_same_counts(tmp_path, order, junk, duplicate, cut):
    """Truncation, binary junk, duplicated and out-of-order lines: `status` reads the same states (a failed cell,
    a queued one, a started one) and counts the lines it could not read."""
    study = tmp_path / "s"
    study.mkdir(exist_ok=True)
    cells = [{"name": c, "config": {"epochs": 2}} for c in CELLS]
    (study / "study.json").write_text(json.dumps({"cells": cells}))
    lines = _journal_lines(
        [("a-run", "queued"), ("a-run", "started"), ("a-run", "failed"), ("b-run", "queued"), ("b-run", "epoch")]
        + [("c-run", "queued")]
    )
    shuffled = [lines[i] for i in order] + [lines[duplicate]]
    for at, bad in junk:
        shuffled.insert(min(at, len(shuffled)), bad)
    shuffled.append(lines[-1][: len(lines[-1]) * cut // 31])  # the last line cut short by a crash (or empty)
    (study / EVENTS_JSONL).write_bytes(b"".join(shuffled))
    states = {c.name: c.state for c in study_cells(study)}
    assert states == {"a-run": "failed", "b-run": "pending", "c-run": "pending"}
    text = status_text(study, study_cells(study))
    assert "3 runs: 0 finished, 0 running, 2 pending, 1 failed" in text
    unreadable = len(junk) + (0 < cut < 31 and len(lines[-1]) * cut // 31 > 0)
    if unreadable:
        assert f"({unreadable} unreadable line(s)" in text
    assert main(["status", str(study)]) == 1


def test_status_streams_a_large_journal(tmp_path):
    """A 50 MB journal is read line by line: the memory of a few lines, not of the file (tracemalloc counts every
    Python allocation)."""
    import tracemalloc

    study = tmp_path / "s"
    study.mkdir()
    (study / "study.json").write_text(json.dumps({"cells": [{"name": "a-run", "config": {"epochs": 10**6}}]}))
    line = _journal_lines([("a-run", "epoch")])[0]
    with open(study / EVENTS_JSONL, "wb") as f:
        for _ in range(50 * 2**20 // len(line) // 1024):
            f.write(line * 1024)
    assert (study / EVENTS_JSONL).stat().st_size > 45 * 2**20
    tracemalloc.start()
    try:
        cells = study_cells(study)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert cells[0].name == "a-run" and peak < 5 * 2**20, peak


def test_a_cell_whose_worker_died_says_so(tmp_path):
    from tests.test_launch import dead_pid

    study = tmp_path / "s"
    run = study / "runs" / "a-run"
    run.mkdir(parents=True)
    (study / "study.json").write_text(json.dumps({"cells": [{"name": "a-run", "config": {"epochs": 2}}]}))
    owner = {"host": __import__("socket").gethostname(), "pid": dead_pid(), "heartbeat": time.time()}
    (run / ".lock").write_text(json.dumps(owner))
    events.record(study, "a-run", "epoch", epoch=1, epochs=2, images_per_s=5.0, epoch_time_s=1.0)
    (cell,) = study_cells(study)
    assert cell.state == "failed" and f"pid {owner['pid']}" in cell.reason and "after epoch 1" in cell.reason


@pytest.mark.data
def test_a_finished_run_with_a_dead_workers_lock_is_not_finished(tmp_path):
    """The worker died between summary.json and its last evaluation file: the lock it left says the evaluation is
    incomplete, so the run is not counted finished; taking it over writes the evaluation again."""
    from cnnbench.launch.cell import FINISHED, finished, train_cell
    from tests.test_launch import dead_pid

    cfg = TrainConfig(model=TINY_MODEL, dataset="mnist_demo", epochs=1, limit_train=64, limit_test=32, batch_size=32)
    study = tmp_path / "s"
    assert train_cell(study, cfg.to_dict(), log=lambda _: None) == FINISHED
    run = study / "runs" / f"{TINY_MODEL}-mnist_demo-seed0"
    (run / "misclassified.png").unlink()
    owner = {"host": __import__("socket").gethostname(), "pid": dead_pid(), "heartbeat": time.time()}
    (run / ".lock").write_text(json.dumps(owner))
    assert not finished(run)
    assert train_cell(study, cfg.to_dict(), log=lambda _: None) == FINISHED
    assert finished(run) and (run / "misclassified.png").exists()


@pytest.mark.data
def test_a_study_with_a_failed_cell_raises_after_the_report_of_the_others(tmp_path):
    """`compare` exits non-zero when any cell failed, names it, and still writes the report of the others."""
    from cnnbench.errors import RunsFailedError
    from cnnbench.launch.launchers import LaunchConfig
    from cnnbench.study import StudySpec, run_study

    base = TrainConfig(epochs=1, limit_train=64, limit_test=32, batch_size=32, width=0.25, threads=1)
    spec = StudySpec(("vgg11_bn",), ("mnist_demo",), (0, 1), base)
    out = tmp_path / "s"
    (out / "runs" / "vgg11_bn-mnist_demo-seed1" / "checkpoints").mkdir(parents=True)
    (out / "runs" / "vgg11_bn-mnist_demo-seed1" / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RunsFailedError, match=r"1 run\(s\) of the study failed: vgg11_bn-mnist_demo-seed1"):
        run_study(spec, out, log=lambda _: None, launch=LaunchConfig("local", workers=1))
    assert (out / "report.html").exists() and (out / "runs" / "vgg11_bn-mnist_demo-seed0" / "summary.json").exists()
