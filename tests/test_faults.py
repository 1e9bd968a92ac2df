"""Faults: kills, Ctrl-C, corrupt and malicious checkpoints, out of memory; nothing lost, results unchanged."""

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from cnnbench import TrainConfig, fit
from cnnbench.engine.checkpoint import load_file, load_latest
from cnnbench.errors import TrainingError, UnsafeCheckpointError

ARGS = [
    "--model",
    "vgg11_bn",
    "--dataset",
    "mnist",
    "--limit-train",
    "384",
    "--limit-test",
    "128",
    "--batch-size",
    "32",
    "--lr",
    "0.01",
    "--epochs",
    "2",
    "--seed",
    "3",
    "--deterministic",
    "--threads",
    "1",
]


def start(out, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "cnnbench", "train", *ARGS, "--out", str(out), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(out, *extra):
    proc = start(out, *extra)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    return (out / "metrics.csv").read_text()


def wait_for(path, proc, timeout=300):
    t0 = time.time()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.time() - t0 < timeout
        time.sleep(0.05)


def results(metrics_csv: str) -> list[list[str]]:
    return [line.split(",")[:7] for line in metrics_csv.splitlines()]  # without the timing columns


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return results(finish(tmp_path_factory.mktemp("ref") / "run"))


@pytest.mark.data
@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches(tmp_path, reference):
    out = tmp_path / "run"
    proc = start(out)
    wait_for(out / "metrics.csv", proc)  # epoch 1 is checkpointed; epoch 2 is under way
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "summary.json").exists()
    assert load_file(out / "checkpoints" / "last.pt")["epoch"] == 1
    assert results(finish(out, "--resume")) == reference


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.parametrize("sig, code, said", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "SIGTERM")])
def test_a_signal_saves_mid_epoch_and_resume_matches(tmp_path, reference, sig, code, said):
    """Ctrl-C and SIGTERM (schedulers, `docker stop`) alike: the partial epoch is saved, a stale temporary
    checkpoint file is removed on resume, and the resumed run equals the uninterrupted one."""
    out = tmp_path / "run"
    proc = start(out)
    wait_for(out / "metrics.csv", proc)
    time.sleep(1.0)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == code and said in stderr and "--resume" in stderr and "Traceback" not in stderr
    state = load_file(out / "checkpoints" / "last.pt")
    assert state["epoch"] == 1 and state["partial"] is not None and state["partial"]["step"] >= 1
    stale = out / "checkpoints" / ".last.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")  # what a kill during a write leaves
    assert results(finish(out, "--resume")) == reference
    assert not stale.exists()


@pytest.mark.data
def test_corrupt_checkpoint_falls_back_to_previous(tmp_path):
    from tests.test_train import TINY, StopAfter

    cfg = TrainConfig(**{**TINY, "epochs": 3, "deterministic": True})
    full = fit(cfg, tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, tmp_path / "cut", callbacks=[StopAfter(2)])
    last = tmp_path / "cut" / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # a torn write from a broken disk
    state, warnings = load_latest(tmp_path / "cut" / "checkpoints")
    assert state["epoch"] == 1 and "truncated or corrupt" in warnings[0]
    resumed = fit(cfg, tmp_path / "cut", resume=True)
    assert resumed["test_top1"] == full["test_top1"] and resumed["train_loss"] == full["train_loss"]
    assert any("corrupt" in w for w in resumed["warnings"])


@pytest.mark.data
def test_evaluate_says_when_it_falls_back_to_the_previous_checkpoint(tmp_path, capsys):
    from cnnbench.cli import main
    from tests.test_train import TINY

    fit(TrainConfig(**TINY), tmp_path / "run")  # 2 epochs: last.pt and prev.pt
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    assert main(["evaluate", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "Falling back to the previous checkpoint" in err


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/cnnbench-pwned",))


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    bad = tmp_path / "last.pt"
    torch.save({"model": Exploit()}, bad)
    with pytest.raises(UnsafeCheckpointError, match="Refusing to load"):
        load_file(bad)
    # an unsafe last.pt is never skipped in favour of prev.pt: the caller must see it
    torch.save({"epoch": 1}, tmp_path / "prev.pt")
    with pytest.raises(UnsafeCheckpointError):
        load_latest(tmp_path)
    assert not os.path.exists("/tmp/cnnbench-pwned")


@pytest.mark.parametrize(
    "error, recognised",
    [
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
        (RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: 1 bytes"), True),
        (MemoryError(), True),
        (RuntimeError("the tensor is out of memory range of the index"), False),  # a bug, not a full device
    ],
)
def test_out_of_memory_is_recognised_by_its_type(error, recognised):
    from cnnbench.engine.train import _out_of_memory

    assert _out_of_memory(error) is recognised


@pytest.mark.data
def test_out_of_memory_suggests_smaller_batch(tmp_path, monkeypatch):
    from cnnbench.engine import train as train_module
    from tests.test_train import TINY

    def oom(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 123456789 bytes.")

    monkeypatch.setattr(train_module, "train_one_epoch", oom)
    with pytest.raises(TrainingError, match=r"Out of memory at batch size 32.*--batch-size.*16"):
        fit(TrainConfig(**TINY), tmp_path / "oom")


@pytest.mark.data
@pytest.mark.slow
def test_study_interrupted_mid_grid_resumes_without_recomputing(tmp_path):
    from cnnbench.study import StudySpec, run_study
    from tests.test_train import StopAfter

    spec = StudySpec(
        ("vgg11_bn", "vgg13_bn"),
        ("mnist_demo",),
        (0,),
        TrainConfig(epochs=2, limit_train=96, limit_test=64, batch_size=32, lr=0.01),
    )
    calls = []

    def callbacks():
        calls.append(1)
        return [StopAfter(1)] if len(calls) == 2 else []  # interrupt the second run after its first epoch

    with pytest.raises(KeyboardInterrupt):
        run_study(spec, tmp_path / "s", callbacks=callbacks, log=lambda _: None)
    first = tmp_path / "s" / "runs" / "vgg11_bn-mnist_demo-seed0" / "summary.json"
    second = tmp_path / "s" / "runs" / "vgg13_bn-mnist_demo-seed0"
    mtime = first.stat().st_mtime_ns
    epoch1 = (second / "metrics.csv").read_text().splitlines()[1]
    log = []
    run_study(spec, tmp_path / "s", log=log.append)
    assert first.stat().st_mtime_ns == mtime
    assert "vgg11_bn-mnist_demo-seed0: finished earlier, skipped" in log
    assert "[1/1] vgg13_bn-mnist_demo-seed0 (resuming)" in log
    rows = (second / "metrics.csv").read_text().splitlines()
    assert rows[1] == epoch1 and len(rows) == 3


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.skipif(not hasattr(__import__("os"), "setpgid"), reason="resource limits are a POSIX feature")
def test_a_file_size_limit_during_a_checkpoint_is_one_paragraph_and_the_last_checkpoint_stays(tmp_path):
    """RLIMIT_FSIZE (what a full quota or a file-size limit looks like to a process): writing the second epoch's
    checkpoint fails; the first epoch's checkpoint is intact and the run resumes from it once the limit is gone."""
    import resource

    out = tmp_path / "run"
    finish(out, "--epochs", "1")  # epoch 1 written under no limit
    size = (out / "checkpoints" / "last.pt").stat().st_size
    first = load_file(out / "checkpoints" / "last.pt")

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write then fails with EFBIG instead of killing us
        resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, size // 2))

    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "epochs": 2}))  # the same run, asked for one more epoch
    (out / "summary.json").unlink()  # so it counts as unfinished
    proc = subprocess.run(
        [sys.executable, "-m", "cnnbench", "train", "--out", str(out), "--resume"],
        capture_output=True,
        text=True,
        preexec_fn=limited,
        timeout=600,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "grew past the size" in proc.stderr and "last.pt" in proc.stderr
    kept, _ = load_latest(out / "checkpoints")
    assert kept["epoch"] == first["epoch"] == 1  # the previous checkpoint is whole and usable
    finish(out, "--resume")
    assert load_file(out / "checkpoints" / "last.pt")["epoch"] == 2


@pytest.mark.data
@pytest.mark.parametrize("code, said", [(errno.EROFS, "read-only"), (errno.ENAMETOOLONG, "too long")])
def test_file_system_conditions_are_one_paragraph(tmp_path, monkeypatch, capsys, code, said):
    """A read-only --out folder or a path too long, as the operating system reports them while writing."""
    import cnnbench.engine.train as train_module
    from cnnbench.cli import main

    def refuse(path, obj):
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(train_module, "write_json", refuse)
    assert main(["train", *ARGS, "--epochs", "1", "--limit-train", "64", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert said in err and "config.json" in err and "Traceback" not in err
