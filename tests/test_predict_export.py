"""Using a trained run: `cnnbench predict` on image files and `cnnbench export` (ONNX, torch.export)."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from cnnbench import TrainConfig, fit
from cnnbench.cli import main
from cnnbench.data.loader import load_dataset
from cnnbench.engine.evaluate import evaluate
from cnnbench.engine.predict import load_trained
from tests.conftest import TINY_MODEL

# Plumbing (the run's preprocessing, exporters against PyTorch): the tiny registered model, not a full network.
CFG = TrainConfig(
    model=TINY_MODEL,
    dataset="mnist",
    epochs=1,
    limit_train=600,
    limit_test=50,
    batch_size=32,
    lr=0.05,
    precision="fp32",
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("run") / "mnist-tiny"
    fit(CFG, run)
    return run


def _test_images(n=12):
    """MNIST test digits as the raw 28x28 grey images a user would have, with their labels."""
    data = load_dataset("mnist", None, CFG.replace(pad_to=None).data_options())
    return data.test_x[:n, 0].numpy(), data.test_y[:n].numpy(), data.classes


@pytest.mark.data
def test_predict_gives_the_runs_own_predictions_for_image_files(trained, tmp_path, capsys):
    images, labels, classes = _test_images()
    folder = tmp_path / "digits"
    folder.mkdir()
    for i, img in enumerate(images):
        # RGB files of grey digits: predict converts them back to the grey input the model trained on
        Image.fromarray(np.repeat(img[..., None], 3, axis=2)).save(folder / f"{i:02d}.png")
    (folder / "broken.png").write_bytes(b"not a png")
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(folder / "big.png")
    out = tmp_path / "pred.csv"
    assert main(["predict", str(trained), str(folder), "--top-k", "3", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "broken.png: not an image" in captured.err and "big.png: 40x40 pixels" in captured.err
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert [r["file"].rsplit("/", 1)[-1] for r in rows] == [f"{i:02d}.png" for i in range(len(images))]
    # the same model on the same images through the training pipeline (padding to 32, its mean and std)
    model, prep = load_trained(trained, torch.device("cpu"))
    data = load_dataset("mnist", None, CFG.data_options())
    logits = evaluate(
        model,
        data.test_x[: len(images)],
        data.test_y[: len(images)],
        data,
        torch.device("cpu"),
        "fp32",
        64,
        channels_last=False,
    )["logits"]
    probs = torch.softmax(logits, 1)
    assert [r["class_1"] for r in rows] == [classes[i] for i in probs.argmax(1).tolist()]
    np.testing.assert_allclose([float(r["prob_1"]) for r in rows], probs.max(1).values.numpy(), rtol=1e-4, atol=1e-5)
    assert all(float(r["prob_1"]) >= float(r["prob_2"]) >= float(r["prob_3"]) for r in rows)


@pytest.mark.data
def test_predict_refuses_when_nothing_can_be_read(trained, tmp_path, capsys):
    assert main(["predict", str(trained), str(tmp_path / "missing.png")]) == 2
    err = capsys.readouterr().err
    assert "no such file or folder" in err and "No image could be predicted" in err
    assert main(["predict", str(tmp_path), str(tmp_path)]) == 2  # not a run folder
    assert "not a cnnbench run folder" in capsys.readouterr().err


@pytest.mark.data
def test_export_pt2_matches_pytorch(trained, tmp_path):
    out = tmp_path / "model.pt2"
    assert main(["export", str(trained), "--format", "pt2", "--out", str(out)]) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["input_shape"] == [1, 32, 32] and len(meta["classes"]) == 10 and len(meta["mean"]) == 1
    model, _ = load_trained(trained, torch.device("cpu"))
    x = torch.randn(5, 1, 32, 32)
    loaded = torch.export.load(out).module()
    torch.testing.assert_close(loaded(x), model(x), rtol=1e-4, atol=1e-4)


@pytest.mark.data
def test_export_onnx_matches_pytorch(trained, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install 'cnnbench[onnx]')")
    pytest.importorskip("onnxscript", reason="onnxscript not installed (pip install 'cnnbench[onnx]')")
    out = tmp_path / "model.onnx"
    assert main(["export", str(trained), "--out", str(out)]) == 0
    model, _ = load_trained(trained, torch.device("cpu"))
    x = torch.randn(7, 1, 32, 32)  # another batch size than the export's example
    (got,) = ort.InferenceSession(str(out)).run(None, {"image": x.numpy()})
    np.testing.assert_allclose(got, model(x).detach().numpy(), rtol=1e-3, atol=1e-3)
