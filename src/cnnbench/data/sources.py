"""Named data sets and where to find them: ``--data-dir``, else ``$CNNBENCH_DATA``, else a per-user cache.

Each source returns uint8 images (N x C x H x W) with labels and class names, and says which copy it
read ("CIFAR-10 (JPEG copy)"), so that runs record their data's provenance.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from .image_folder import ALL, hold_out, read_image_folder
from .readers import read_idx

DIGITS = [str(i) for i in range(10)]
FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


@dataclass(frozen=True)
class RawDataset:
    name: str
    source: str  # human-readable provenance, e.g. "MNIST (idx files in /data/MNIST/raw)"
    classes: list[str]
    train_x: np.ndarray  # uint8 N x C x H x W
    train_y: np.ndarray  # int64 N
    test_x: np.ndarray
    test_y: np.ndarray
    natural: bool  # natural images: horizontal flips are label-preserving (not for digits or text)
    test_files: tuple[str, ...] = ()  # the held-out test images' paths, for a folder that had no test split


def default_data_root() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "cnnbench" / "data"


def resolve_data_root(data_dir: str | os.PathLike | None = None) -> Path:
    if data_dir:
        return Path(data_dir).expanduser()
    env = os.environ.get("CNNBENCH_DATA")
    return Path(env).expanduser() if env else default_data_root()


def _nchw(x: np.ndarray) -> np.ndarray:
    """N x H x W (grey) or N x H x W x C to a contiguous N x C x H x W array."""
    if x.ndim == 3:
        x = x[:, None]
    else:
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _mnist_like(tv_name: str, pretty: str, classes: list[str]):
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

    def load(root: Path, download: bool) -> RawDataset:
        raw = root / tv_name / "raw"
        paths = [_find_idx(raw, s) for s in stems]
        failure = None
        if any(p is None for p in paths) and download:
            failure = _torchvision_download(tv_name, root)
            paths = [_find_idx(raw, s) for s in stems]
        if any(p is None for p in paths):
            missing = [s for s, p in zip(stems, paths) if p is None]
            raise _not_found(
                pretty, [raw], f"the idx files {', '.join(missing)} (optionally .gz) in {raw}", download, failure
            )
        tx, ty, vx, vy = (read_idx(p) for p in paths)
        _check_pair(tx, ty, paths[0], paths[1])
        _check_pair(vx, vy, paths[2], paths[3])
        return RawDataset(
            tv_name.lower().replace("fashionmnist", "fashion_mnist"),
            f"{pretty} (idx files in {raw})",
            classes,
            _nchw(tx),
            ty.astype(np.int64),
            _nchw(vx),
            vy.astype(np.int64),
            natural=False,
        )

    return load


def _check_pair(images: np.ndarray, labels: np.ndarray, ipath, lpath) -> None:
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(
            f"{ipath} ({images.shape}) and {lpath} ({labels.shape}) do not match: expected N images of HxW and "
            f"N labels."
        )


def _torchvision_download(tv_name: str, root: Path) -> str | None:
    """Let torchvision download ``tv_name`` into ``root``; the reason it failed (offline, unreachable mirror, disk
    full, a bad checksum), or None. The caller reports it with where to put the files by hand."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, tv_name)
    for kwargs in ({"train": True}, {"train": False}) if tv_name != "SVHN" else ({"split": "train"}, {"split": "test"}):
        try:
            cls(str(root), download=True, **kwargs)
        except Exception as e:  # any failure: reported, not raised, so the message can say what to do instead
            return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no details'}"
    return None


def _torchvision_arrays(tv_name: str, root: Path):
    """Read a data set that torchvision already holds in ``root`` (no download)."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, tv_name)
    try:
        if tv_name == "SVHN":
            tr, te = cls(str(root), split="train"), cls(str(root), split="test")
            return tr.data, np.asarray(tr.labels), te.data, np.asarray(te.labels), [str(i) for i in range(10)]
        tr, te = cls(str(root), train=True), cls(str(root), train=False)
    except RuntimeError:
        return None
    return (
        _nchw(np.asarray(tr.data)),
        np.asarray(tr.targets),
        _nchw(np.asarray(te.data)),
        np.asarray(te.targets),
        list(tr.classes),
    )


def _torchvision_natural(tv_name: str, name: str, pretty: str, folder: str, fallbacks: tuple[str, ...] = ()):
    def load(root: Path, download: bool) -> RawDataset:
        arrays = _torchvision_arrays(tv_name, root)
        where = [root / folder]
        source = f"{pretty} (torchvision files in {root / folder})"
        if arrays is None:
            for fb in fallbacks:
                path = root / fb
                where.append(path)
                if path.exists():
                    splits = read_image_folder(path)
                    if ALL in splits:
                        raise DataError(f"{path} has no train/ and test/ folders: it is not a copy of {pretty}.")
                    tr, te = splits["train"], splits["test"]
                    return RawDataset(
                        name,
                        f"{pretty} (JPEG copy: {path})",
                        tr.classes,
                        _nchw(tr.images),
                        tr.labels,
                        _nchw(te.images),
                        te.labels,
                        natural=True,
                    )
        failure = None
        if arrays is None and download:
            failure = _torchvision_download(tv_name, root)
            arrays = _torchvision_arrays(tv_name, root)
            source = f"{pretty} (downloaded by torchvision into {root / folder})"
        if arrays is None:
            alt = f", or an ImageFolder copy {' or '.join(fallbacks)} in {root}" if fallbacks else ""
            raise _not_found(pretty, where, f"torchvision's files in {root / folder}{alt}", download, failure)
        tx, ty, vx, vy, classes = arrays
        return RawDataset(name, source, classes, tx, ty.astype(np.int64), vx, vy.astype(np.int64), natural=True)

    return load


def _not_found(pretty: str, where: list[Path], expected: str, download: bool, failure: str | None = None) -> DataError:
    tried = (
        f"tried to download it, which failed ({failure or 'the files were still missing afterwards'}), and "
        if download
        else ""
    )
    return DataError(
        f"{pretty} was not found: cnnbench {tried}looked in {', '.join(str(w) for w in where)}. It expects {expected}. "
        "Point --data-dir (or the CNNBENCH_DATA environment variable) at a folder laid out like torchvision's "
        "data root, or run once with internet access so that torchvision can download it there."
    )


DEFAULT_TEST_SPLIT = 0.2  # share of each class held out as the test split of a folder without one


def held_out_text(fraction: float, held: int, total: int) -> str:
    """What a hold-out took, as measured: at least one image of each class is held out and one kept, so a class of
    few images loses more (or less) than the fraction asked for."""
    said = f"{held} of {total} images held out as the test split"
    share = held / total if total else 0.0
    if round(share, 2) == round(fraction, 2):
        return f"{said} ({fraction:.0%} of each class)"
    return (
        f"{said} ({share:.0%}, not the {fraction:.0%} asked for: at least one image of each class is held out and "
        "one kept)"
    )


def _imagefolder(path: str, resize: int | None = None, test_split: float | None = None) -> RawDataset:
    groups = read_image_folder(path, resize)
    if ALL in groups:  # class folders only: hold out a class-balanced test split, the same for every run
        images = groups[ALL]
        fraction = DEFAULT_TEST_SPLIT if test_split is None else test_split
        train_idx, test_idx = hold_out(images.labels, images.classes, fraction)
        files = np.asarray(images.files)
        tr = dataclasses.replace(
            images, images=images.images[train_idx], labels=images.labels[train_idx], files=tuple(files[train_idx])
        )
        te = dataclasses.replace(
            images, images=images.images[test_idx], labels=images.labels[test_idx], files=tuple(files[test_idx])
        )
        source = f"ImageFolder {path} ({held_out_text(fraction, len(test_idx), len(images.labels))}, fixed seed)"
    else:
        if test_split is not None:
            raise DataError(
                f"{path} has its own test folder, so there is nothing to hold out: drop --test-split "
                "(it is for folders holding only class folders)."
            )
        tr, te = groups["train"], groups["test"]
        source = f"ImageFolder {path}"
    # Grey images are treated like digits (no flips); colour images as natural photographs.
    natural = tr.images.shape[-1] == 3
    return RawDataset(
        f"imagefolder:{path}",
        source,
        tr.classes,
        _nchw(tr.images),
        tr.labels,
        _nchw(te.images),
        te.labels,
        natural=natural,
        test_files=te.files if ALL in groups else (),
    )


BUILTIN = Path(__file__).resolve().parent / "builtin"


def _mnist_demo(root: Path, download: bool) -> RawDataset:
    """5,000 / 1,000 class-balanced MNIST images (N x 1 x 28 x 28) shipped inside the package
    (scripts/make_demo_data.py)."""
    with np.load(BUILTIN / "mnist_demo.npz") as z:
        return RawDataset(
            "mnist_demo",
            "MNIST demo subset (5,000 train / 1,000 test, class-balanced, shipped with cnnbench)",
            DIGITS,
            z["train_x"],
            z["train_y"].astype(np.int64),
            z["test_x"],
            z["test_y"].astype(np.int64),
            natural=False,
        )


SOURCES: dict[str, tuple[str, Callable[[Path, bool], RawDataset]]] = {
    "mnist_demo": ("MNIST subset shipped with cnnbench, 5k/1k (offline demo)", _mnist_demo),
    "mnist": ("MNIST handwritten digits, 28x28 grey, 60k/10k", _mnist_like("MNIST", "MNIST", DIGITS)),
    "fashion_mnist": (
        "Fashion-MNIST clothing, 28x28 grey, 60k/10k",
        _mnist_like("FashionMNIST", "Fashion-MNIST", FASHION),
    ),
    "cifar10": (
        "CIFAR-10 natural images, 32x32 RGB, 50k/10k",
        _torchvision_natural("CIFAR10", "cifar10", "CIFAR-10", "cifar-10-batches-py", ("cifar10-jpeg.tar", "cifar10")),
    ),
    "cifar100": (
        "CIFAR-100 natural images, 32x32 RGB, 50k/10k",
        _torchvision_natural("CIFAR100", "cifar100", "CIFAR-100", "cifar-100-python"),
    ),
    "svhn": ("SVHN house numbers, 32x32 RGB, 73k/26k", _torchvision_natural("SVHN", "svhn", "SVHN", "")),
}


def dataset_names() -> list[str]:
    return list(SOURCES) + ["imagefolder:PATH"]


def check_dataset_name(name: str) -> None:
    """Raise DataError for a name that is neither a named data set nor ``imagefolder:PATH``."""
    if name.startswith("imagefolder:") or name in SOURCES:
        return
    near = difflib.get_close_matches(name, list(SOURCES), n=1)
    hint = f" Did you mean {near[0]!r}?" if near else ""
    raise DataError(f"Unknown data set {name!r}.{hint} Choose one of {', '.join(dataset_names())}.")


def load_raw(
    name: str,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    resize: int | None = None,
    test_split: float | None = None,
) -> RawDataset:
    """Load a named data set (or ``imagefolder:PATH``) as uint8 arrays. ``resize``: an image folder whose images
    differ in size has them resized to it while loading (the named data sets are resized after loading).
    ``test_split``: the share of each class an image folder without a test folder holds out (default 0.2)."""
    check_dataset_name(name)
    if name.startswith("imagefolder:"):
        folder = name.split(":", 1)[1]
        if not folder.strip():
            raise DataError(
                "imagefolder: needs a path after the colon, such as imagefolder:data/pets (a folder or a .tar)."
            )
        return _imagefolder(folder, resize, test_split)
    if test_split is not None:
        raise DataError(
            f"{name} comes with its own test split: drop --test-split (it is for image folders holding "
            "only class folders)."
        )
    root = resolve_data_root(data_dir)
    raw = SOURCES[name][1](root, download)
    # Provenance relative to the data root, so published results do not carry one machine's absolute paths.
    raw = dataclasses.replace(raw, source=raw.source.replace(str(root), data_root_label(data_dir)))
    if name == "svhn":  # SVHN labels the digit 0 as 10 in the original files; torchvision maps it to 0
        raw = dataclasses.replace(raw, natural=False)
    return raw


def data_root_label(data_dir: str | os.PathLike | None = None) -> str:
    """How the data root is named in a run's data source: the option or variable that chose it."""
    if data_dir:
        return "<--data-dir>"
    return "$CNNBENCH_DATA" if os.environ.get("CNNBENCH_DATA") else "<default data root>"


def locate(name: str, data_dir=None) -> str | None:
    """Where a named data set is found locally (no download, no decoding), or None."""
    root = resolve_data_root(data_dir)
    candidates = {
        "mnist_demo": [BUILTIN / "mnist_demo.npz"],
        "mnist": [root / "MNIST" / "raw"],
        "fashion_mnist": [root / "FashionMNIST" / "raw"],
        "cifar10": [root / "cifar-10-batches-py", root / "cifar10-jpeg.tar", root / "cifar10"],
        "cifar100": [root / "cifar-100-python"],
        "svhn": [root / "train_32x32.mat"],
    }[name]
    for c in candidates:
        if c.exists() and (not c.is_dir() or any(c.iterdir())):
            return str(c)
    return None
