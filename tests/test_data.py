from pathlib import Path

import numpy as np
import pytest
import torch

from cnnbench.data import DataOptions, load_dataset
from cnnbench.data.loader import Augment, balanced_indices, random_crop, train_batches
from cnnbench.data.sources import load_raw
from cnnbench.errors import DataError


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist", options=DataOptions(limit_train=1000, limit_test=200, val_split=100))


@pytest.mark.data
def test_mnist_slices_are_class_balanced_and_padded(mnist):
    assert mnist.train_x.shape == (900, 1, 32, 32) and mnist.train_x.dtype == torch.uint8
    assert torch.bincount(mnist.train_y).tolist() == [90] * 10
    assert torch.bincount(mnist.test_y).tolist() == [20] * 10
    assert torch.bincount(mnist.val_y).tolist() == [10] * 10
    # 28 -> 32 zero padding, 2 pixels each side
    assert mnist.train_x[:, :, :2].max() == 0 and mnist.train_x[:, :, -2:].max() == 0
    assert mnist.in_chans == 1 and mnist.num_classes == 10 and not mnist.natural
    assert "MNIST" in mnist.source


@pytest.mark.data
def test_validation_is_disjoint_from_training(mnist):
    train = {bytes(x.numpy()) for x in mnist.train_x}
    assert not any(bytes(x.numpy()) in train for x in mnist.val_x)


@pytest.mark.data
def test_normalisation_statistics_come_from_training_split(mnist):
    x = mnist.train_x.double() / 255
    assert mnist.mean.item() == pytest.approx(x.mean().item(), rel=1e-5)
    assert mnist.std.item() == pytest.approx(x.std().item(), rel=1e-4)


def test_balanced_indices_round_robin():
    labels = np.array([0, 0, 0, 0, 1, 2, 2])
    idx = balanced_indices(labels, 5)
    assert sorted(labels[idx].tolist()) == [0, 0, 1, 2, 2]


@pytest.mark.data
@pytest.mark.slow
def test_cifar10_falls_back_to_jpeg_copy():
    d = load_dataset("cifar10", options=DataOptions(limit_train=100, limit_test=50))
    assert d.source.startswith("CIFAR-10 (JPEG copy") and d.natural
    assert d.train_x.shape == (100, 3, 32, 32) and len(d.classes) == 10


def test_random_crop_is_a_shifted_window():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.uint8).reshape(2, 1, 6, 6)
    g = torch.Generator().manual_seed(0)
    out = random_crop(x, 2, g)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        windows = [padded[i, :, a : a + 6, b : b + 6] for a in range(5) for b in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)


def _matches(batch, images, mean, std):
    """For each batch image: is it (within float rounding) one of ``images``, normalised?"""
    ref = (images.float() / 255 - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
    dist = torch.cdist(batch.flatten(1), ref.flatten(1), compute_mode="donot_use_mm_for_euclid_dist")
    return dist.min(1).values < 1e-3


@pytest.mark.data
def test_flips_only_for_natural_images(mnist):
    import dataclasses

    aug = Augment(crop_padding=0, flip=True)
    x, _ = next(train_batches(mnist, 200, torch.Generator().manual_seed(0), aug, channels_last=False))
    assert _matches(x, mnist.train_x, mnist.mean, mnist.std).all()  # digits: never flipped
    natural = dataclasses.replace(mnist, natural=True)
    x, _ = next(train_batches(natural, 200, torch.Generator().manual_seed(0), aug, channels_last=False))
    as_is = _matches(x, mnist.train_x, mnist.mean, mnist.std)
    flipped = _matches(x, mnist.train_x.flip(3), mnist.mean, mnist.std)
    assert (as_is | flipped).all() and 50 < int(flipped.sum()) < 150


@pytest.mark.data
def test_train_batches_cover_the_epoch(mnist):
    g = torch.Generator().manual_seed(0)
    ys = torch.cat([y for _, y in train_batches(mnist, 128, g, Augment())])
    assert sorted(ys.tolist()) == sorted(mnist.train_y.tolist())


def test_missing_dataset_offline_says_where_it_looked(tmp_path):
    with pytest.raises(DataError, match=rf"looked in {tmp_path}.*--data-dir"):
        load_raw("mnist", data_dir=tmp_path, download=False)


@pytest.mark.data
def test_data_source_is_recorded_relative_to_the_data_root(data_root):
    from_env = load_raw("mnist")
    assert from_env.source == "MNIST (idx files in $CNNBENCH_DATA/MNIST/raw)"
    given = load_raw("mnist", data_dir=data_root)
    assert given.source == "MNIST (idx files in <--data-dir>/MNIST/raw)" and str(data_root) not in given.source


def test_published_studies_carry_no_machine_paths():
    studies = Path(__file__).resolve().parents[1] / "studies"
    for path in studies.rglob("*"):
        if path.suffix in (".json", ".csv", ".md", ".html") and path.is_file():
            text = path.read_text(encoding="utf-8")
            assert "/work/" not in text and "shared/datasets" not in text, path


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_a_failed_download_says_why(name, tmp_path, monkeypatch):
    """Whatever stops torchvision's download is named in the error, not swallowed."""
    import torchvision.datasets as tvd

    def refuse(*args, download=False, **kwargs):
        if download:
            raise OSError("No space left on device")
        raise RuntimeError("Dataset not found")  # what torchvision says when its files are absent

    monkeypatch.setattr(tvd, "MNIST" if name == "mnist" else "CIFAR10", refuse)
    with pytest.raises(DataError, match=r"failed \(OSError: No space left on device\)"):
        load_raw(name, data_dir=tmp_path, download=True)


def test_unknown_dataset_suggests_nearest():
    with pytest.raises(DataError, match="Did you mean 'cifar10'"):
        load_raw("cifar-10")
