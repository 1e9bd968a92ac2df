"""Bad input that used to give silently wrong results, lost output or a traceback: each case fails without its fix."""

import io
import os
import stat

import numpy as np
import pytest
from PIL import Image

from cnnbench import TrainConfig, fit
from cnnbench.cli import main
from cnnbench.data.readers import decode_image
from cnnbench.errors import ConfigError, DataError
from cnnbench.fileio import FILE_MODE, write_json
from cnnbench.study import StudySpec, run_study
from tests.conftest import TINY_MODEL
from tests.test_readers import make_tree


def test_written_files_get_the_users_normal_mode(tmp_path):
    path = write_json(tmp_path / "a.json", {"x": 1})
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == FILE_MODE == 0o666 & ~umask  # not mkstemp's 0600


def test_16_bit_grey_png_is_scaled_not_clipped():
    ramp = np.linspace(0, 65535, 64 * 64).astype(np.uint16).reshape(64, 64)
    buf = io.BytesIO()
    Image.fromarray(ramp).save(buf, "PNG")
    img = decode_image(buf.getvalue(), "ramp.png")[..., 0]
    assert img.min() == 0 and img.max() == 255 and abs(img.mean() - 127.5) < 1  # clipping made 99.5% of it 255
    assert (img == 255).mean() < 0.01


def test_a_one_class_data_set_is_refused(tmp_path):
    tree = make_tree(tmp_path / "one", classes=("cat",), per_class=4, size=32)
    cfg = TrainConfig(model=TINY_MODEL, dataset=f"imagefolder:{tree}", epochs=1, batch_size=2, lr=0.01)
    with pytest.raises(DataError, match="a classifier needs at least two"):
        fit(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "summary.json").exists()


def test_two_data_sets_that_would_share_run_folders_are_refused(tmp_path):
    spec = StudySpec((TINY_MODEL,), ("imagefolder:data/cc1", "imagefolder:data_cc1"), (0,), TrainConfig())
    with pytest.raises(ConfigError, match="would share the run folders"):
        run_study(spec, tmp_path / "study", log=lambda _: None)
    assert not (tmp_path / "study" / "runs").exists()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tree = make_tree(tmp_path_factory.mktemp("data") / "pets", per_class=4, size=16)
    out = tmp_path_factory.mktemp("runs") / "run"
    fit(TrainConfig(model=TINY_MODEL, dataset=f"imagefolder:{tree}", epochs=1, batch_size=4, lr=0.01), out)
    return out


def test_export_never_writes_its_metadata_over_the_model(tiny_run, tmp_path, capsys):
    assert main(["export", str(tiny_run), "--format", "pt2", "--out", str(tmp_path / "m.json")]) == 2
    assert "needs another name" in capsys.readouterr().err and not (tmp_path / "m.json").exists()
    assert main(["export", str(tiny_run), "--format", "pt2", "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main(["export", str(tiny_run), "--format", "pt2", "--out", str(tmp_path / "new" / "m.pt2")]) == 0
    assert (tmp_path / "new" / "m.pt2").exists() and (tmp_path / "new" / "m.json").exists()


def test_resuming_a_finished_run_says_so(tiny_run, capsys):
    assert main(["train", "--out", str(tiny_run), "--resume"]) == 0
    assert "already finished" in capsys.readouterr().out


def test_class_names_are_drawn_as_written_not_as_mathtext(tmp_path):
    from cnnbench.report.plots import confusion_heatmaps

    classes = [r"$\undefinedcmd{x}$", "plain"]
    path = confusion_heatmaps(np.array([[3, 1], [0, 4]]), classes, tmp_path / "cm.png", title=r"$\undefinedcmd$")
    assert path.exists() and path.stat().st_size > 0


def test_the_decode_cache_tells_folders_with_identical_file_listings_apart(tmp_path):
    """Two folders with the same file names, sizes and modification times, one of white images, one of black: the
    second must not load from the first one's cache entry."""
    from cnnbench.data.image_folder import read_image_folder

    def folder(name, value):
        root = tmp_path / name
        for split in ("train", "test"):
            for c in ("a", "b"):
                (root / split / c).mkdir(parents=True)
                for i in range(2):
                    path = root / split / c / f"{i}.png"
                    buf = io.BytesIO()
                    Image.fromarray(np.full((8, 8), value, dtype=np.uint8)).save(buf, "PNG", compress_level=0)
                    path.write_bytes(buf.getvalue())
                    os.utime(path, ns=(1_000_000_000, 1_000_000_000))  # identical times in both folders
        return root

    white, black = folder("white", 255), folder("black", 0)
    assert read_image_folder(white)["train"].images.min() == 255
    assert read_image_folder(black)["train"].images.max() == 0


def _png(array, **kwargs) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG", **kwargs)
    return buf.getvalue()


def test_bad_files_are_named_and_skipped_by_predict(tiny_run, tmp_path):
    """The bad-file zoo through predict: each is skipped with its own reason, the good one is predicted."""
    from cnnbench.engine.predict import image_files, load_trained, predict_files

    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "good.png").write_bytes(_png(np.full((16, 16, 3), 100, dtype=np.uint8)))
    (zoo / "tiny.png").write_bytes(_png(np.zeros((1, 1, 3), dtype=np.uint8)))
    (zoo / "empty.png").write_bytes(b"")
    (zoo / "text.png").write_text("not an image")
    bomb = Image.new("L", (20000, 20000))  # a mostly empty 400-megapixel image, a few KB once compressed
    bomb.save(zoo / "bomb.png", optimize=True)
    (zoo / "grey16.png").write_bytes(_png(np.full((16, 16), 40000, dtype=np.uint16)))
    model, prep = load_trained(tiny_run, "cpu")
    files, _ = image_files([zoo])
    rows, errors = predict_files(model, prep, files, "cpu")
    assert sorted(r["file"].rsplit("/", 1)[-1] for r in rows) == ["good.png", "grey16.png"]
    text = "\n".join(errors)
    assert "tiny.png: 1x1 pixels, but the run trained on 16x16" in text
    assert "bomb.png" in text and "text.png" in text and "empty.png" in text
    assert "BytesIO" not in text


def test_a_partial_corruption_run_is_named_as_such_and_gets_no_benchmark_mce():
    from cnnbench.analysis.robustness.corruptions import CIFAR, set_name
    from cnnbench.analysis.robustness.metrics import corruption_errors

    assert set_name(3) == "CIFAR-10-C (15 corruptions)" == set_name(3, list(CIFAR))
    assert set_name(3, ["fog", "contrast"]) == "CIFAR-10-C, 2 of its 15 corruptions: fog, contrast"
    run = {"clean_top1": 0.9, "corruptions": {"fog": {"1": 0.8}, "contrast": {"1": 0.7}}}
    base = {"clean_top1": 0.9, "corruptions": {"fog": {"1": 0.6}, "contrast": {"1": 0.7}}}
    partial = corruption_errors(run, base, full_set=list(CIFAR))
    assert partial["mce"] is None and partial["relative_mce"] is None
    assert partial["partial_mce"] == pytest.approx((0.2 / 0.4 + 1.0) / 2) and partial["counted"] == ["contrast", "fog"]
    assert corruption_errors(run, base, full_set=["fog", "contrast"])["mce"] == pytest.approx(0.75)


def test_a_yaml_alias_bomb_is_a_quick_clear_error(tmp_path, capsys):
    import time

    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [
        f"{b}: &{b} [*{a},*{a},*{a},*{a},*{a},*{a},*{a},*{a},*{a}]" for a, b in zip("abcdefghijkl", "bcdefghijklm")
    ]
    lines.append("epochs: *m")  # 9^12 strings if expanded, from 109 aliases
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    start = time.perf_counter()
    assert main(["train", "--config", str(bomb), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert time.perf_counter() - start < 20 and len(err) < 2000 and "more than 100 YAML aliases" in err


def test_a_binary_config_and_an_empty_image_folder_path_are_clear_errors(tmp_path, capsys):
    binary = tmp_path / "c.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    assert main(["train", "--config", str(binary), "--out", str(tmp_path / "r")]) == 2
    assert "not a text file" in capsys.readouterr().err
    assert main(["train", "--model", TINY_MODEL, "--dataset", "imagefolder:", "--out", str(tmp_path / "r")]) == 2
    assert "needs a path after the colon" in capsys.readouterr().err


def test_a_full_disk_is_one_paragraph_and_keeps_what_was_written(tmp_path, capsys, monkeypatch):
    import errno

    import cnnbench.engine.checkpoint as checkpoint

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "r" / "checkpoints" / "last.pt"))

    monkeypatch.setattr(checkpoint, "write_bytes", full)
    tree = make_tree(tmp_path / "pets", per_class=4, size=16)
    args = ["train", "--model", TINY_MODEL, "--dataset", f"imagefolder:{tree}", "--epochs", "1", "--batch-size", "4"]
    assert main([*args, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "the disk is full" in err and "last.pt" in err and "Traceback" not in err
    assert (tmp_path / "r" / "config.json").exists()  # what was written before stays


def test_symlinked_class_folders_are_followed_like_symlinked_files(tmp_path):
    from cnnbench.data.image_folder import read_image_folder

    tree = make_tree(tmp_path / "real", classes=("cat", "dog"), per_class=2)
    linked = tmp_path / "linked"
    for split in ("train", "test"):
        (linked / split).mkdir(parents=True)
        (linked / split / "cat").symlink_to(tree / split / "cat", target_is_directory=True)
        (linked / split / "dog").mkdir()
        for f in (tree / split / "dog").iterdir():
            (linked / split / "dog" / f.name).symlink_to(f)
    (linked / "train" / "dog" / "loop").symlink_to(linked / "train", target_is_directory=True)  # a cycle
    groups = read_image_folder(linked, cache=False)
    assert groups["train"].classes == ["cat", "dog"] and len(groups["train"].labels) == 4


def test_figures_of_many_classes_show_a_selection_and_say_so(tmp_path):
    import time

    from cnnbench.report.html import shown_classes
    from cnnbench.report.plots import MAX_CLASSES_DRAWN, class_samples_grid, confusion_heatmaps, most_confused

    k = 2000
    rng = np.random.default_rng(0)
    cm = np.diag(rng.integers(5, 10, k))
    cm[3, 7] = cm[7, 3] = 50  # classes 3 and 7 are confused most
    start = time.perf_counter()
    confusion_heatmaps(cm, [f"c{i}" for i in range(k)], tmp_path / "cm.png", title="many")
    images, labels = np.zeros((k, 1, 8, 8), dtype=np.uint8), np.arange(k)
    class_samples_grid(images, labels, [f"c{i}" for i in range(k)], tmp_path / "s.png", title="many")
    assert time.perf_counter() - start < 60  # a full 2,000-class figure would take many minutes
    assert {3, 7} <= set(most_confused(cm, MAX_CLASSES_DRAWN).tolist())
    rows = [{"class": f"c{i}", "f1": str(i / k)} for i in range(k)]
    assert [r["class"] for r in shown_classes(rows)][:2] == ["c0", "c1"] and len(shown_classes(rows)) == 40


def test_the_bad_file_zoo_through_the_image_folder_reader(tmp_path):
    """Readable oddities load (CMYK, an animated GIF's first frame, 16-bit grey scaled); unreadable files are named
    in one message, never a traceback."""
    from cnnbench.data.image_folder import read_image_folder

    good = tmp_path / "zoo"
    for split in ("train", "test"):
        for c in ("a", "b"):
            (good / split / c).mkdir(parents=True)
            (good / split / c / "ok.png").write_bytes(_png(np.full((8, 8, 3), 90, dtype=np.uint8)))
    Image.new("CMYK", (8, 8), (0, 50, 100, 0)).save(good / "train" / "a" / "cmyk.jpg")
    frames = [Image.new("RGB", (8, 8), (v, v, v)) for v in (10, 200)]
    frames[0].save(good / "train" / "b" / "anim.gif", save_all=True, append_images=frames[1:])
    (good / "train" / "b" / "grey16.png").write_bytes(_png(np.full((8, 8), 65535, dtype=np.uint16)))
    groups = read_image_folder(good, cache=False)
    assert len(groups["train"].labels) == 5 and groups["train"].images.max() == 255  # 16-bit white stays white
    bad = tmp_path / "bad"
    bad.mkdir()
    for split in ("train", "test"):
        (bad / split / "a").mkdir(parents=True)
        (bad / split / "a" / "ok.png").write_bytes(_png(np.zeros((8, 8, 3), dtype=np.uint8)))
    (bad / "train" / "a" / "empty.png").write_bytes(b"")
    (bad / "train" / "a" / "text.png").write_text("not an image")
    Image.new("L", (20000, 20000)).save(bad / "train" / "a" / "bomb.png", optimize=True)
    with pytest.raises(DataError) as e:
        read_image_folder(bad, cache=False)
    message = str(e.value)
    assert "empty.png" in message and "text.png" in message and "bomb.png" in message and "BytesIO" not in message
