import csv
import json
import math
import re

import numpy as np
import pytest

from cnnbench import TrainConfig, fit
from cnnbench.engine.callbacks import Callback
from cnnbench.engine.checkpoint import load_file
from cnnbench.errors import ConfigError, DataError, TrainingError

TINY = dict(model="vgg11_bn", dataset="mnist", limit_train=128, limit_test=64, batch_size=32, lr=0.01, epochs=2)


@pytest.fixture(scope="module")
def learned_run(tmp_path_factory):
    """A short real run: 2,000 MNIST images, one epoch."""
    out = tmp_path_factory.mktemp("runs") / "mnist-vgg11"
    cfg = TrainConfig(
        model="vgg11_bn", dataset="mnist", epochs=1, limit_train=2000, limit_test=1000, batch_size=16, lr=0.01
    )
    return out, fit(cfg, out)


@pytest.mark.data
def test_short_run_clearly_learns(learned_run):
    _, summary = learned_run
    assert summary["test_top1"] >= 0.90
    # plain test cross-entropy far below chance's ln 10 = 2.30; the training loss (label-smoothed, averaged over
    # the epoch from its first step) below chance too
    assert summary["test_loss"] < 0.5 and summary["train_loss"] < math.log(10)


@pytest.mark.data
def test_run_folder_contents(learned_run):
    out, summary = learned_run
    for name in ["config.json", "metrics.csv", "summary.json", "log.txt", "checkpoints/last.pt", "predictions.npz"]:
        assert (out / name).is_file(), name
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [
        "epoch",
        "train_loss",
        "train_acc",
        "test_loss",
        "test_top1",
        "test_top5",
        "lr",
        "epoch_time_s",
        "images_per_s",
        "infer_images_per_s",
        "peak_memory_mb",
    ]
    assert len(rows) == 1 and float(rows[0]["test_top1"]) == pytest.approx(summary["test_top1"])
    saved = json.loads((out / "summary.json").read_text())
    for key in [
        "model",
        "dataset",
        "data_source",
        "epochs",
        "train_loss",
        "train_acc",
        "test_loss",
        "test_top1",
        "test_top5",
        "train_time_s",
        "params",
        "macs",
        "variant",
        "environment",
    ]:
        assert key in saved, key
    assert saved["train_acc"] == pytest.approx(float(rows[-1]["train_acc"]))
    with np.load(out / "predictions.npz") as z:  # the summary's top-1 is what its saved predictions score
        assert saved["test_top1"] == pytest.approx(float((z["preds"] == z["targets"]).mean()))
    assert saved["variant"] == "small" and saved["dataset"] == "mnist" and "MNIST" in saved["data_source"]
    assert saved["params"] > 9_000_000 and saved["macs"] > 100_000_000
    assert {"torch", "device", "precision", "threads"} <= set(saved["environment"])
    config = json.loads((out / "config.json").read_text())
    assert config["variant"] == "small" and config["precision"] in ("bf16", "fp32")


@pytest.mark.data
def test_log_uses_the_study_format(learned_run):
    out, _ = learned_run
    text = (out / "log.txt").read_text()
    assert re.search(
        r"^start time: .+\n----- epoch 1 -----\nFinish Training 1 epoch, Loss: \d\.\d{6}, Acc\.: \d\.\d{6}\n"
        r"Test Loss: \d\.\d{6}, Top1_Acc: \d\.\d{6} , Top5_Acc: \d\.\d{6}\nEnd time: .+\n$",
        text,
    )


@pytest.mark.data
def test_predictions_match_summary(learned_run):
    out, summary = learned_run
    pred = np.load(out / "predictions.npz")
    assert pred["logits"].shape == (1000, 10)
    assert (pred["preds"] == pred["targets"]).mean() == pytest.approx(summary["test_top1"], abs=1e-6)


@pytest.mark.data
def test_checkpoint_loads_with_weights_only(learned_run):
    out, _ = learned_run
    state = load_file(out / "checkpoints" / "last.pt")
    assert state["epoch"] == 1 and "optimizer" in state and "rng" in state


@pytest.mark.data
def test_existing_run_is_not_overwritten(learned_run):
    out, _ = learned_run
    before = (out / "summary.json").read_bytes()
    with pytest.raises(ConfigError, match="already holds a run"):
        fit(TrainConfig(**TINY), out)
    assert (out / "summary.json").read_bytes() == before


class StopAfter(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, run, row):
        if row["epoch"] == self.epoch:
            raise KeyboardInterrupt


@pytest.mark.data
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_resume_equals_uninterrupted_run(tmp_path, precision):
    cfg = TrainConfig(**TINY, precision=precision, deterministic=True)
    full = fit(cfg, tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, tmp_path / "cut", callbacks=[StopAfter(1)])
    assert not (tmp_path / "cut" / "summary.json").exists()
    resumed = fit(cfg, tmp_path / "cut", resume=True)
    for key in ["train_loss", "train_acc", "test_loss", "test_top1", "test_top5"]:
        assert resumed[key] == full[key], key
    full_rows = (tmp_path / "full" / "metrics.csv").read_text().splitlines()
    cut_rows = (tmp_path / "cut" / "metrics.csv").read_text().splitlines()
    strip = lambda line: line.split(",")[:7]  # noqa: E731  (timings differ)
    assert [strip(r) for r in full_rows] == [strip(r) for r in cut_rows]


@pytest.mark.data
def test_crop_padding_sets_the_augmentation(tmp_path):
    """On MNIST (no flips) a zero crop padding leaves augmentation nothing to do: the run equals --no-augment."""
    cfg = TrainConfig(**{**TINY, "epochs": 1}, precision="fp32", deterministic=True)
    plain = fit(cfg.replace(augment=False), tmp_path / "plain")
    unshifted = fit(cfg.replace(crop_padding=0), tmp_path / "pad0")
    shifted = fit(cfg.replace(crop_padding=2), tmp_path / "pad2")
    assert unshifted["train_loss"] == plain["train_loss"]
    assert shifted["train_loss"] != plain["train_loss"]


@pytest.mark.data
def test_resume_refuses_changed_settings(tmp_path):
    cfg = TrainConfig(**{**TINY, "epochs": 1})
    with pytest.raises(KeyboardInterrupt):
        fit(cfg.replace(epochs=2), tmp_path / "run", callbacks=[StopAfter(1)])
    with pytest.raises(ConfigError, match=r"different settings \(lr: 0.01 -> 0.5\)"):
        fit(cfg.replace(epochs=2, lr=0.5), tmp_path / "run", resume=True)


@pytest.mark.data
def test_resume_of_a_finished_run_checks_settings_too(learned_run):
    out, summary = learned_run
    cfg = TrainConfig(
        model="vgg11_bn", dataset="mnist", epochs=1, limit_train=2000, limit_test=1000, batch_size=16, lr=0.01
    )
    assert fit(cfg, out, resume=True) == summary  # same settings: the finished run's summary
    with pytest.raises(ConfigError, match=r"different settings \(epochs: 1 -> 3\)"):
        fit(cfg.replace(epochs=3), out, resume=True)


class StepLosses(Callback):
    def __init__(self):
        self.steps = []

    def on_step_end(self, run, epoch, step, loss):
        self.steps.append((epoch, step, float(loss)))


@pytest.mark.data
@pytest.mark.parametrize("check_every", [1, 3])
def test_divergence_is_checked_every_check_every_steps_and_callbacks_see_every_step(tmp_path, check_every):
    cfg = TrainConfig(
        **{
            **TINY,
            "model": "vgg11",
            "lr": 10.0,
            "schedule": "constant",
            "label_smoothing": 0.0,
            "check_every": check_every,
            "epochs": 1,
        }
    )
    seen = StepLosses()
    with pytest.raises(TrainingError, match=r"epoch 1, step (\d+)") as e:
        fit(cfg, tmp_path / "nan", callbacks=[seen])
    stopped = int(e.value.args[0].split("step ")[1].split(":")[0])
    first_bad = next(step for _, step, loss in seen.steps if not math.isfinite(loss))
    # stopped at the first check at or after the first non-finite loss; every step reached the callback
    assert stopped == min(s for s in range(first_bad, 5) if s % check_every == 0 or s == 4)
    assert [step for _, step, _ in seen.steps] == list(range(1, stopped + 1))


@pytest.mark.data
def test_diverging_loss_stops_with_advice(tmp_path):
    # Without batch norm a learning rate of 10 blows up within a few steps.
    cfg = TrainConfig(**{**TINY, "model": "vgg11", "lr": 10.0, "schedule": "constant", "label_smoothing": 0.0})
    with pytest.raises(TrainingError, match=r"epoch 1, step \d+.*lower learning rate \(for example --lr 1\)"):
        fit(cfg, tmp_path / "nan")


@pytest.mark.data
def test_batch_larger_than_data(tmp_path):
    with pytest.raises(ConfigError, match="larger than the training set"):
        fit(TrainConfig(**{**TINY, "limit_train": 20, "batch_size": 64}), tmp_path / "r")


@pytest.mark.data
def test_images_too_small_for_model(tmp_path):
    with pytest.raises(DataError, match=r"needs at least 32x32.*--resize 32"):
        fit(TrainConfig(**{**TINY, "pad_to": None}), tmp_path / "r")


def test_resize_makes_small_images_usable(tmp_path):
    from tests.test_readers import make_tree

    tree = make_tree(tmp_path / "tiny", classes=("a", "b"), per_class=4, size=16)
    cfg = TrainConfig(model="vgg11_bn", dataset=f"imagefolder:{tree}", epochs=1, batch_size=4, pad_to=None)
    with pytest.raises(DataError, match=r"16x16 pixels.*--resize 32"):
        fit(cfg, tmp_path / "small")
    summary = fit(cfg.replace(resize=40), tmp_path / "resized")
    assert summary["input_shape"] == [3, 40, 40] and summary["classes"] == ["a", "b"]


@pytest.mark.data
def test_training_goes_on_when_memory_cannot_be_read(tmp_path, monkeypatch):
    """Where the platform does not tell the resident memory, the run still trains and records no peak."""
    import cnnbench.engine.memory as memory

    monkeypatch.setattr(memory, "resident_bytes", lambda: None)
    with pytest.warns(UserWarning, match="resident memory"):
        summary = fit(TrainConfig(**{**TINY, "epochs": 1}), tmp_path / "r")
    assert summary["peak_memory_mb"] is None and summary["train_images"] == 128 and summary["epochs"] == 1


def test_resident_memory_is_read_portably():
    """psutil's reading, on any OS; on Linux it agrees with /proc/self/statm at the real page size."""
    import os
    import sys

    from cnnbench.engine.memory import resident_bytes

    rss = resident_bytes()
    assert rss is not None and rss > 10 * 2**20  # torch alone holds more than 10 MB
    if sys.platform.startswith("linux"):
        with open("/proc/self/statm") as f:
            statm = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        assert abs(statm - rss) < 0.05 * rss


@pytest.mark.data
def test_global_torch_settings_are_restored_after_a_run(tmp_path):
    import torch

    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
    fit(TrainConfig(**{**TINY, "epochs": 1, "threads": 1, "deterministic": True}), tmp_path / "a")
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == before
    with pytest.raises(TrainingError):  # also when the run fails
        fit(
            TrainConfig(
                **{**TINY, "model": "vgg11", "lr": 10.0, "schedule": "constant", "threads": 1, "deterministic": True}
            ),
            tmp_path / "b",
        )
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == before


class Recorder(Callback):
    """Counts steps and keeps the count in checkpoints; notes the error that stopped the run."""

    def __init__(self, stop_at_epoch=None):
        self.steps, self.error, self.stop_at_epoch = 0, None, stop_at_epoch

    def on_step_end(self, run, epoch, step, loss):
        self.steps += 1

    def on_epoch_end(self, run, row):
        if row["epoch"] == self.stop_at_epoch:
            raise KeyboardInterrupt

    def on_exception(self, run, error):
        self.error = error

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = state["steps"]


@pytest.mark.data
def test_callbacks_hear_of_the_exception_and_keep_their_state(tmp_path):
    from cnnbench.analysis.insight.dynamics import WeightDynamics
    from tests.conftest import TINY_MODEL

    cfg = TrainConfig(**{**TINY, "model": TINY_MODEL})
    first, dynamics = Recorder(stop_at_epoch=1), WeightDynamics()
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, tmp_path / "run", callbacks=[first, dynamics])
    assert isinstance(first.error, KeyboardInterrupt)
    assert dynamics.handles == []  # its optimizer hooks are gone with the failed run
    assert load_file(tmp_path / "run" / "checkpoints" / "last.pt")["callbacks"] == {"Recorder": {"steps": 4}}
    resumed = Recorder()
    fit(cfg, tmp_path / "run", resume=True, callbacks=[resumed])
    assert resumed.steps == 8 and resumed.error is None  # 4 steps an epoch: restored, then counted on


def test_progress_says_how_long_the_run_has_left():
    from types import SimpleNamespace

    from cnnbench.engine.callbacks import ConsoleProgress
    from cnnbench.engine.run import TrainingState

    rows = [{"epoch_time_s": 20.0}, {"epoch_time_s": 40.0}]
    run = SimpleNamespace(config=SimpleNamespace(epochs=5), state=TrainingState(epoch=2, rows=rows))
    assert ConsoleProgress._left(run, {"epoch": 2}) == " | about 2 min left"  # 3 epochs of 30 s
    assert ConsoleProgress._left(run, {"epoch": 5}) == ""
