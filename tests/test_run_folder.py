"""One way to open a trained run: preprocessing recorded at the start, old folders derived once, one precision."""

import json

import pytest
import torch

from cnnbench import TrainConfig, fit
from cnnbench.cli import main
from cnnbench.engine.evaluate_run import evaluate_run
from cnnbench.engine.run_folder import (
    IMAGENET_MEAN,
    evaluation_precision,
    open_run,
    read_preprocessing,
)
from cnnbench.errors import ConfigError
from tests.conftest import TINY_MODEL
from tests.test_train import StopAfter

CFG = TrainConfig(model=TINY_MODEL, dataset="mnist", epochs=2, limit_train=256, limit_test=64, batch_size=32, lr=0.05)


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A run stopped after its first of two epochs: no summary.json, one checkpoint."""
    out = tmp_path_factory.mktemp("runs") / "cut"
    with pytest.raises(KeyboardInterrupt):
        fit(CFG, out, callbacks=[StopAfter(1)])
    assert not (out / "summary.json").exists()
    return out


@pytest.mark.data
def test_preprocessing_is_written_when_the_run_starts(interrupted):
    prep = json.loads((interrupted / "preprocessing.json").read_text())
    assert len(prep["classes"]) == 10
    assert prep["input_shape"] == [1, 32, 32] and prep["pad_to"] == 32 and prep["resize"] is None
    assert 0.05 < prep["mean"][0] < 0.3 and 0.2 < prep["std"][0] < 0.5  # MNIST's ink on black, padded


@pytest.mark.data
def test_an_interrupted_run_opens_and_evaluates(interrupted):
    run = open_run(interrupted)
    assert run.epoch == 1 and run.config.model == TINY_MODEL and not run.model.training
    summary = evaluate_run(interrupted, device="cpu")
    assert summary["epoch"] == 1 and summary["test_images"] == 64
    first_epoch = (interrupted / "metrics.csv").read_text().splitlines()[1].split(",")
    assert summary["top1"] == pytest.approx(float(first_epoch[4]), abs=1 / 64)  # what training measured then


@pytest.mark.data
def test_an_old_fine_tuned_run_needs_no_download(tmp_path, interrupted, monkeypatch):
    """A fine-tuned run from before preprocessing.json, interrupted (so no summary): its normalisation is
    ImageNet's constants, known without fetching the weights."""
    import shutil

    import torchvision.models as tvm

    old = tmp_path / "old"
    shutil.copytree(interrupted, old)
    (old / "preprocessing.json").unlink()
    config = json.loads((old / "config.json").read_text())
    (old / "config.json").write_text(json.dumps({**config, "pretrained": "imagenet"}))

    def no_network(*args, **kwargs):
        raise AssertionError("the ImageNet weights were asked for")

    monkeypatch.setattr(tvm, "get_model_weights", no_network)
    prep = read_preprocessing(old)
    assert prep.mean == pytest.approx([sum(IMAGENET_MEAN) / 3])  # grey input: the mean of the RGB statistics
    assert open_run(old).preprocessing == prep


@pytest.mark.data
def test_a_run_started_from_another_run_takes_its_normalisation(tmp_path, interrupted):
    tuned = tmp_path / "tuned"
    fit(CFG.replace(pretrained=str(interrupted), epochs=1), tuned)
    source, child = read_preprocessing(interrupted), read_preprocessing(tuned)
    assert child.mean == pytest.approx(source.mean) and child.std == pytest.approx(source.std)
    summary = json.loads((tuned / "summary.json").read_text())
    assert summary["normalization"]["mean"] == pytest.approx(child.mean)


def test_evaluation_precision_is_one_rule():
    cfg = CFG.replace(precision="bf16", device="cpu")
    assert evaluation_precision(cfg, torch.device("cpu")) == "bf16"  # reproduces training's test numbers
    assert evaluation_precision(cfg.replace(device="cuda"), torch.device("cpu")) == "fp32"


def test_not_a_run_folder_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not a cnnbench run folder"):
        open_run(tmp_path)


def test_a_narrow_run_reopens_at_its_width_and_says_so_in_tables(tmp_path):
    """--width reaches the model, the run folder rebuilds the same network, and a report row names the width."""
    from cnnbench.report.run_records import load_run_dirs
    from cnnbench.report.tables import group_runs

    cfg = TrainConfig(
        model="vgg11_bn", dataset="mnist_demo", epochs=1, limit_train=64, limit_test=32, batch_size=32, width=0.0625
    )
    narrow = tmp_path / "study" / "runs" / "narrow"
    summary = fit(cfg, narrow)
    assert summary["params"] < 100_000  # 1/16 of vgg11_bn's channels: under a thousandth of its 9.2 M weights
    assert evaluate_run(narrow)["top1"] == pytest.approx(summary["test_top1"])
    (group,) = group_runs(load_run_dirs([narrow]))
    assert group.variant == "small" and group.scaled == ", 0.0625x width"
    described = "small (global pool + one FC), 0.0625x width"  # once, in the Markdown and the HTML tables alike
    assert group.row()["variant_described"] == described
    assert main(["report", str(tmp_path / "study")]) == 0
    assert f"| {described} |" in (tmp_path / "study" / "comparison.md").read_text()
    page = (tmp_path / "study" / "report.html").read_text()
    assert f'<span class="sub">{described}</span>' in page
    assert "<b>vgg11_bn (small, 0.0625x width), seed 0</b>" in page
    with pytest.raises(ConfigError, match="published width only"):
        fit(cfg.replace(pretrained="imagenet"), tmp_path / "pretrained")
