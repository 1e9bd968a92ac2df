"""Users' folders of images: class folders without a split, the decoded-array cache, unreadable files."""

import os
import tarfile

import numpy as np
import pytest
from PIL import Image

from cnnbench.data import image_folder
from cnnbench.data.image_folder import hold_out, read_image_folder
from cnnbench.data.loader import DataOptions, load_dataset
from cnnbench.errors import DataError


def flat_folder(root, counts=(10, 5, 7)):
    """<class>/<image> only, as most people keep photos: class i holds counts[i] images of value 10*i + k."""
    for i, n in enumerate(counts):
        (root / f"class{i}").mkdir(parents=True)
        for k in range(n):
            Image.fromarray(np.full((8, 8, 3), 10 * i + k, np.uint8)).save(root / f"class{i}" / f"{k:02d}.png")
    return root


def test_folder_of_class_folders_holds_out_a_balanced_test_split(tmp_path):
    folder = flat_folder(tmp_path / "photos")
    data = load_dataset(f"imagefolder:{folder}", None, DataOptions(pad_to=None, test_split=0.2))
    assert data.classes == ["class0", "class1", "class2"]
    # 20% of each class (rounded, at least one): 2 of 10, 1 of 5, 1 of 7
    assert np.bincount(data.test_y.numpy()).tolist() == [2, 1, 1]
    assert np.bincount(data.train_y.numpy()).tolist() == [8, 4, 6]
    # the recorded files are the test images, in the test tensor's order
    assert len(data.test_files) == 4
    for name, image, label in zip(data.test_files, data.test_x, data.test_y):
        assert name.startswith(f"class{int(label)}/")
        assert int(image[0, 0, 0]) == 10 * int(label) + int(name[-6:-4])
    # no image is in both splits
    values = lambda x: {int(v) for v in x[:, 0, 0, 0]}  # noqa: E731
    assert not values(data.train_x) & values(data.test_x)
    # the same images for every run (a fixed seed, not the run's)
    again = load_dataset(f"imagefolder:{folder}", None, DataOptions(pad_to=None, test_split=0.2))
    assert again.test_files == data.test_files


def test_default_test_split_and_the_run_records_it(tmp_path):
    from cnnbench.config import TrainConfig
    from cnnbench.engine import fit

    folder = flat_folder(tmp_path / "photos", counts=(10, 10))
    cfg = TrainConfig(
        model="resnet18",
        dataset=f"imagefolder:{folder}",
        epochs=1,
        batch_size=4,
        pad_to=32,
        precise_bn=0,
        eval_batch_size=8,
    )
    summary = fit(cfg, tmp_path / "run")
    assert summary["test_images"] == 4 and summary["train_images"] == 16  # 0.2 of each class by default
    held_out = (tmp_path / "run" / "test_files.txt").read_text().split()
    assert len(held_out) == 4 and all(n.startswith(("class0/", "class1/")) for n in held_out)
    assert "held out as the test split" in summary["data_source"]


def test_test_split_refused_where_a_test_split_exists(tmp_path):
    from tests.test_readers import make_tree

    tree = make_tree(tmp_path / "pets")
    with pytest.raises(DataError, match="has its own test folder.*drop --test-split"):
        load_dataset(f"imagefolder:{tree}", None, DataOptions(test_split=0.3))
    with pytest.raises(DataError, match="mnist_demo comes with its own test split"):
        load_dataset("mnist_demo", None, DataOptions(test_split=0.3))


def test_a_class_of_one_image_cannot_be_split():
    with pytest.raises(DataError, match="'b' has only 1 image"):
        hold_out(np.array([0, 0, 1]), ["a", "b"], 0.5)


def test_flat_tar_with_a_top_folder(tmp_path):
    folder = flat_folder(tmp_path / "photos", counts=(3, 3))
    tar_path = tmp_path / "photos.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(folder, arcname="photos")
    from_tar, from_dir = read_image_folder(tar_path)["all"], read_image_folder(folder)["all"]
    assert from_tar.classes == from_dir.classes == ["class0", "class1"]
    np.testing.assert_array_equal(from_tar.images, from_dir.images)
    assert (
        from_tar.files
        == from_dir.files
        == ("class0/00.png", "class0/01.png", "class0/02.png", "class1/00.png", "class1/01.png", "class1/02.png")
    )


def test_every_unreadable_file_is_named_in_one_message(tmp_path):
    folder = flat_folder(tmp_path / "photos", counts=(3, 3))
    (folder / "class0" / "broken.png").write_bytes(b"not an image")
    (folder / "class1" / "empty.jpg").write_bytes(b"")
    with pytest.raises(DataError) as err:
        read_image_folder(folder)
    message = str(err.value)
    assert message.startswith("2 of the 8 images")
    assert "broken.png" in message and "empty.jpg" in message and "Remove or replace" in message


def test_decoded_folders_are_cached_until_a_file_changes(tmp_path, monkeypatch):
    folder = flat_folder(tmp_path / "photos", counts=(3, 3))
    first = read_image_folder(folder)["all"]
    assert any(image_folder.cache_root().glob("*.npz"))

    def no_decoding(*args):
        raise AssertionError("decoded again although nothing changed")

    monkeypatch.setattr(image_folder, "_decode", no_decoding)
    cached = read_image_folder(folder)["all"]
    np.testing.assert_array_equal(cached.images, first.images)
    assert cached.files == first.files and cached.classes == first.classes
    # another --resize is another entry
    with pytest.raises(AssertionError, match="decoded again"):
        read_image_folder(folder, resize=4)
    # a changed file (new content, so a new size or modification time) is decoded again
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(folder / "class1" / "00.png")
    stat = (folder / "class1" / "00.png").stat()
    os.utime(folder / "class1" / "00.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    monkeypatch.undo()
    changed = read_image_folder(folder)["all"]
    assert int(changed.images[3, 0, 0, 0]) == 200


def test_an_unwritable_cache_only_costs_time(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setenv("CNNBENCH_CACHE", str(blocker / "cache"))
    folder = flat_folder(tmp_path / "photos", counts=(2, 2))
    assert read_image_folder(folder)["all"].images.shape == (4, 8, 8, 3)
