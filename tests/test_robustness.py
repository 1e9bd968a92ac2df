"""Corruptions, attacks and `cnnbench robustness`: properties that hold for any correct implementation."""

import json

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnbench.analysis.robustness.attacks import PixelModel, fgsm, pgd
from cnnbench.analysis.robustness.corruptions import CIFAR, DIGITS, corrupt
from cnnbench.analysis.robustness.metrics import corruption_errors
from cnnbench.cli import main
from cnnbench.data.loader import DataOptions, load_dataset

# Tables of the original generator that do not grow in mean pixel change (checked separately below):
# glass_blur's first two severities differ only by a blur too small to survive 8-bit rounding, and its third
# blurs away part of the shuffling; elastic_transform trades affine displacement (large pixel change, little
# distortion) for elastic distortion as severity rises (it is checked for change and determinism only); frost's
# image weight falls as its texture weight rises.
NOT_MONOTONE = {"glass_blur", "elastic_transform", "frost"}


@pytest.fixture(scope="module")
def cifar_images():
    return load_dataset("cifar10", None, DataOptions(limit_train=10, limit_test=24)).test_x


@pytest.fixture(scope="module")
def digit_images():
    return load_dataset("mnist", None, DataOptions(limit_train=10, limit_test=24)).test_x


def mean_change(a, b):
    return (a.float() - b.float()).abs().mean().item()


@pytest.mark.data
@pytest.mark.parametrize("name", list(CIFAR))
def test_cifar_corruption_properties(name, cifar_images):
    check_corruption(name, cifar_images)


@pytest.mark.data
@pytest.mark.parametrize("name", list(DIGITS))
def test_digit_corruption_properties(name, digit_images):
    check_corruption(name, digit_images)


def check_corruption(name, x):
    outs = [corrupt(name, x, s, seed=0) for s in range(1, 6)]
    for y in outs:
        assert y.shape == x.shape and y.dtype == torch.uint8  # uint8 is the valid range 0-255 by construction
    changes = [mean_change(y, x) for y in outs]
    assert all(c > 0 for c in changes), changes
    if name not in NOT_MONOTONE:
        assert all(a < b for a, b in zip(changes, changes[1:])), changes
    elif name != "elastic_transform":
        assert changes[-1] > changes[0], changes
    assert torch.equal(corrupt(name, x, 3, seed=7), corrupt(name, x, 3, seed=7))


@pytest.mark.data
def test_unknown_corruption_names_the_nearest(cifar_images):
    from cnnbench.errors import ConfigError

    with pytest.raises(ConfigError, match="did you mean 'gaussian_noise'"):
        corrupt("gausian_noise", cifar_images, 1)
    with pytest.raises(ConfigError, match="1 to 5"):
        corrupt("contrast", cifar_images, 6)


def test_pixelate_matches_pillows_box_filter():
    from PIL import Image

    a = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    ref = Image.fromarray(a).resize((27, 27), Image.BOX).resize((32, 32), Image.BOX)  # severity 3: int(32 * 0.85)
    ours = corrupt("pixelate", torch.from_numpy(a).permute(2, 0, 1)[None].contiguous(), 3)[0].permute(1, 2, 0).numpy()
    assert np.abs(ours.astype(int) - np.asarray(ref).astype(int)).max() <= 1


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 16, 3, padding=1), nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32 * 8 * 8, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))


@pytest.fixture(scope="module")
def trained_digits():
    """A small CNN trained for a few seconds on real MNIST digits: well above chance, attackable."""
    torch.manual_seed(0)
    data = load_dataset("mnist", None, DataOptions(limit_train=3000, limit_test=200))
    model = PixelModel(TinyNet(), data.mean, data.std, channels_last=False)
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    x, y = data.train_x.float() / 255, data.train_y
    for _epoch in range(3):
        for idx in torch.randperm(len(y)).split(64):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    return model, data.test_x.float() / 255, data.test_y


def accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


@pytest.mark.data
def test_attacks_stay_in_the_ball_and_pgd_is_at_least_as_strong(trained_digits):
    model, x, y = trained_digits
    clean = accuracy(model, x, y)
    assert clean > 0.85
    assert (
        accuracy(model, fgsm(model, x, y, 0.0), y) == clean
        and accuracy(model, pgd(model, x, y, 0.0, 0.01, 40), y) == clean
    )
    g = torch.Generator().manual_seed(0)
    for eps in (0.1, 0.2):
        adv_f, adv_p = fgsm(model, x, y, eps), pgd(model, x, y, eps, 0.01, 40, g)
        for adv in (adv_f, adv_p):
            assert (adv - x).abs().max() <= eps + 1e-6 and adv.min() >= 0 and adv.max() <= 1
        acc_f, acc_p = accuracy(model, adv_f, y), accuracy(model, adv_p, y)
        assert acc_p <= acc_f < clean


def test_corruption_errors_by_hand():
    base = {"clean_top1": 0.9, "corruptions": {"fog": {"1": 0.8, "2": 0.6}, "snow": {"1": 0.5}}}
    model = {"clean_top1": 0.95, "corruptions": {"fog": {"1": 0.9, "2": 0.7}, "snow": {"1": 0.5}}}
    e = corruption_errors(model, base)
    assert e["ce"] == pytest.approx({"fog": 0.4 / 0.6, "snow": 1.0})
    assert e["mce"] == pytest.approx((0.4 / 0.6 + 1) / 2)
    # relative: (0.1 + 0.3 - 2 * 0.05) / (0.2 + 0.4 - 2 * 0.1) and (0.5 - 0.05) / (0.5 - 0.1)
    assert e["relative_ce"] == pytest.approx({"fog": 0.3 / 0.4, "snow": 0.45 / 0.4})
    assert corruption_errors(base, base)["mce"] == pytest.approx(1.0)


def fake_cifar_root(root, per_class_train=4, per_class_test=2):
    """A tiny ImageFolder copy of CIFAR-10 (real CIFAR images would need no more than this layout)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    for split, n in (("train", per_class_train), ("test", per_class_test)):
        for k, c in enumerate(classes):
            (root / "cifar10" / split / c).mkdir(parents=True)
            for i in range(n):
                img = (rng.random((32, 32, 3)) * 60 + k * 19).astype(np.uint8)
                Image.fromarray(img).save(root / "cifar10" / split / c / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def cifar_run(tmp_path_factory):
    root = fake_cifar_root(tmp_path_factory.mktemp("data"))
    run = tmp_path_factory.mktemp("runs") / "vgg11_bn-cifar10"
    assert (
        main(
            [
                "train",
                "--model",
                "vgg11_bn",
                "--dataset",
                "cifar10",
                "--data-dir",
                str(root),
                "--epochs",
                "1",
                "--batch-size",
                "8",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    return root, run


def test_official_npy_files_are_used_when_present(cifar_run):
    root, run = cifar_run
    test = load_dataset("cifar10", root, DataOptions())
    folder = root / "CIFAR-10-C"
    folder.mkdir(exist_ok=True)
    # The published layout: 5 severities x the test set, NHWC uint8. Clean copies: every cell equals clean accuracy.
    np.save(folder / "labels.npy", np.tile(test.test_y.numpy(), 5).astype(np.uint8))
    np.save(folder / "contrast.npy", np.tile(test.test_x.permute(0, 2, 3, 1).numpy(), (5, 1, 1, 1)))
    try:
        assert main(["robustness", str(run), "--corruptions", "contrast", "--attacks", "none"]) == 0
        r = json.loads((run / "robustness.json").read_text())
        assert r["source"] == str(folder) and "not the published" not in r["corruption_set"]
        assert set(r["corruptions"]["contrast"].values()) == {r["clean_top1"]} and r["images"] == 20
        np.save(folder / "labels.npy", np.tile(test.test_y.numpy()[::-1], 5).astype(np.uint8))
        assert main(["robustness", str(run), "--corruptions", "contrast", "--attacks", "none"]) == 2
    finally:
        for f in folder.iterdir():
            f.unlink()
        folder.rmdir()
    assert (
        main(
            [
                "robustness",
                str(run),
                "--corruptions",
                "contrast",
                "--attacks",
                "fgsm",
                "--eps",
                "0,2/255",
                "--severities",
                "1,5",
            ]
        )
        == 0
    )
    r = json.loads((run / "robustness.json").read_text())
    assert r["source"] == "generated" and list(r["corruptions"]["contrast"]) == ["1", "5"]
    assert r["adversarial"]["fgsm"][repr(0.0)] == r["clean_top1"]  # eps 0 is exactly the clean accuracy
    rows = (run / "robustness.csv").read_text().splitlines()
    assert rows[0] == "kind,name,level,top1" and len(rows) == 1 + 1 + 2 + 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--corruptions", "fogg"], "did you mean 'fog'"),
        (["--severities", "0-3"], "severities from 1 to 5"),
        (["--eps", "-0.1"], "eps must be between 0 and 1"),
        (["--attacks", "pgdd"], "did you mean 'pgd'"),
    ],
)
def test_bad_input_is_one_paragraph_and_keeps_results(cifar_run, capsys, argv, message):
    _, run = cifar_run
    before = (run / "robustness.json").read_bytes() if (run / "robustness.json").exists() else None
    assert main(["robustness", str(run), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    after = (run / "robustness.json").read_bytes() if (run / "robustness.json").exists() else None
    assert after == before


@pytest.mark.data
def test_run_without_checkpoint_is_refused(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"model": "vgg11_bn", "dataset": "mnist"}))
    assert main(["robustness", str(tmp_path)]) == 2
    assert "has no checkpoint yet" in capsys.readouterr().err
