import io
import tarfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from cnnbench.data.image_folder import read_image_folder
from cnnbench.data.readers import parse_idx, read_idx
from cnnbench.errors import DataError


@pytest.mark.data
def test_idx_reads_canonical_mnist(data_root):
    raw = data_root / "MNIST" / "raw"
    train_x, train_y = read_idx(raw / "train-images-idx3-ubyte"), read_idx(raw / "train-labels-idx1-ubyte")
    test_y = read_idx(raw / "t10k-labels-idx1-ubyte")
    assert train_x.shape == (60000, 28, 28) and train_x.dtype == np.uint8
    assert train_y[0] == 5 and test_y[0] == 7
    assert np.bincount(train_y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(test_y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def test_idx_wrong_magic_names_the_file(tmp_path):
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(b"\x1f\x8b\x08\x00" + bytes(100))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.*magic number is 0x1f8b0800"):
        read_idx(bad)


def test_idx_truncated_file(tmp_path):
    data = idx_bytes(np.zeros((10, 28, 28), np.uint8))
    bad = tmp_path / "images"
    bad.write_bytes(data[:-5])
    with pytest.raises(DataError, match="truncated"):
        read_idx(bad)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=3).map(tuple), st.integers(0, 2**32 - 1))
def test_idx_roundtrip(shape, seed):
    arr = np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)
    np.testing.assert_array_equal(parse_idx(idx_bytes(arr)), arr)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_idx_garbage_is_a_data_error_or_valid(blob):
    try:
        out = parse_idx(blob)
    except DataError:
        return
    # accepted: a well-formed header whose declared shape the payload fills exactly, read in C order
    ndim = blob[3]
    shape = tuple(int.from_bytes(blob[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    assert blob[:3] == b"\x00\x00\x08" and out.shape == shape
    assert out.tobytes() == blob[4 + 4 * ndim : 4 + 4 * ndim + int(np.prod(shape))]


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def make_tree(root, classes=("cat", "dog"), per_class=3, size=8, mode="RGB"):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                shape = (size, size, 3) if mode == "RGB" else (size, size)
                (root / split / c / f"{i}.png").write_bytes(_png(rng.integers(0, 256, shape, dtype=np.uint8)))
    return root


def test_image_folder_dir_and_tar_agree(tmp_path):
    tree = make_tree(tmp_path / "pets")
    tar_path = tmp_path / "pets.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(tree / "train", arcname="train")
        tar.add(tree / "test", arcname="test")
    from_dir, from_tar = read_image_folder(tree), read_image_folder(tar_path)
    for split in ("train", "test"):
        assert from_dir[split].classes == ["cat", "dog"]
        assert from_dir[split].images.shape == (6, 8, 8, 3)
        np.testing.assert_array_equal(from_dir[split].images, from_tar[split].images)
        np.testing.assert_array_equal(from_dir[split].labels, [0, 0, 0, 1, 1, 1])


@pytest.mark.data
def test_cifar10_jpeg_tar(data_root):
    # Reading 60,000 JPEGs takes a few seconds; this is the real file users and benchmarks read.
    splits = read_image_folder(data_root / "cifar10-jpeg.tar")
    assert splits["train"].images.shape == (50000, 32, 32, 3)
    assert splits["test"].images.shape == (10000, 32, 32, 3)
    assert splits["train"].classes[:3] == ["airplane", "automobile", "bird"]
    assert np.bincount(splits["test"].labels).tolist() == [1000] * 10


def test_unreadable_image_is_named(tmp_path):
    tree = make_tree(tmp_path / "pets")
    (tree / "train" / "dog" / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"broken\.jpg"):
        read_image_folder(tree)


def test_empty_class_folder_is_named(tmp_path):
    tree = make_tree(tmp_path / "pets")
    (tree / "train" / "bird").mkdir()
    with pytest.raises(DataError, match=r"train/bird holds no images"):
        read_image_folder(tree)


def test_missing_split(tmp_path):
    (tmp_path / "only" / "train" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no images under 'test/<class>/'|holds no images"):
        read_image_folder(tmp_path / "only")


@pytest.mark.parametrize("member", ["../evil.png", "/abs/evil.png", "train/../../evil.png"])
def test_tar_with_paths_outside_is_refused(tmp_path, member):
    tar_path = tmp_path / "bad.tar"
    data = _png(np.zeros((8, 8, 3), np.uint8))
    with tarfile.open(tar_path, "w") as tar:
        info = tarfile.TarInfo(member)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(DataError, match="outside"):
        read_image_folder(tar_path)


def test_tar_with_link_is_refused(tmp_path):
    tar_path = tmp_path / "link.tar"
    with tarfile.open(tar_path, "w") as tar:
        info = tarfile.TarInfo("train/cat/0.png")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(DataError, match="link"):
        read_image_folder(tar_path)


def _mixed_folder(root):
    """A user's folder: sizes 8x8 to 12x16, grey, RGB, RGBA and palette images side by side."""
    rng = np.random.default_rng(1)
    kinds = [((8, 8, 3), "RGB"), ((12, 16), "L"), ((10, 10, 4), "RGBA"), ((9, 12), "P")]
    for split in ("train", "test"):
        for c in ("cat", "dog"):
            (root / split / c).mkdir(parents=True)
            for i, (shape, mode) in enumerate(kinds):
                img = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))
                (img.convert("P") if mode == "P" else img).save(root / split / c / f"{i}.png")
    return root


def test_mixed_sizes_and_modes_load_with_resize(tmp_path):
    from cnnbench.data.loader import DataOptions, load_dataset

    folder = _mixed_folder(tmp_path / "photos")
    data = load_dataset(f"imagefolder:{folder}", None, DataOptions(resize=12, pad_to=None))
    assert tuple(data.train_x.shape) == (8, 3, 12, 12) and data.classes == ["cat", "dog"]
    # the grey image became three equal channels, resized like the others
    grey = data.train_x[1].numpy()
    assert (grey[0] == grey[1]).all() and (grey[1] == grey[2]).all()


def test_mixed_sizes_without_resize_propose_one(tmp_path):
    folder = _mixed_folder(tmp_path / "photos")
    with pytest.raises(DataError, match=r"different sizes \(8x8, 9x12, 10x10, 12x16\).*--resize 9 \(the median"):
        read_image_folder(folder)
