"""Readers for the file formats data sets come in; each validates its input and names the bad file."""
from __future__ import annotations

import gzip
import io
import os
import posixpath
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
# idx type codes (LeCun's format description): only unsigned bytes are used by the MNIST family.
_IDX_UBYTE = 0x08


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an idx file (MNIST's format, optionally gzipped) into a uint8 array of its declared shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"Cannot read idx file {path}: {e}. Replace it with a good copy of the original file.") from None
    return parse_idx(data, name=str(path))


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    if len(data) < 4:
        raise DataError(f"{name} is not an idx file: it is only {len(data)} bytes long. Replace it with a good copy.")
    zero, dtype, ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0 or dtype != _IDX_UBYTE or not 1 <= ndim <= 4:
        raise DataError(
            f"{name} is not an unsigned-byte idx file: its magic number is 0x{data[:4].hex()} "
            "(expected 0x00000801 for labels or 0x00000803 for images). Check that the file is not "
            "compressed under a wrong name or swapped with another file."
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name} is truncated: its header declares {ndim} dimensions but the file ends early.")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape, dtype=np.int64))
    if len(data) - header != expected:
        raise DataError(
            f"{name} is truncated or corrupt: its header declares shape {shape} ({expected} bytes of data) "
            f"but it holds {len(data) - header}. Replace it with a good copy of the original file."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


@dataclass(frozen=True)
class ImageSplit:
    images: np.ndarray  # uint8, N x H x W x C
    labels: np.ndarray  # int64, N
    classes: list[str]


def decode_image(data: bytes, name: str) -> np.ndarray:
    """H x W x C uint8 (C = 1 for grey images, else 3): palettes, alpha and 16-bit grey converted."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img = img.convert("L" if img.mode in ("L", "1", "I;16", "I") else "RGB")
            arr = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"Cannot decode image {name}: {e}. Remove or replace this file.") from None
    return arr[:, :, None] if arr.ndim == 2 else arr


def resize_images(x: np.ndarray, size: int | None) -> np.ndarray:
    """N x C x H x W uint8 squashed to size x size (bilinear, antialiased; the aspect ratio is not kept)."""
    import torch
    import torch.nn.functional as F

    if size is None or x.shape[-2:] == (size, size):
        return x
    t = F.interpolate(torch.from_numpy(np.ascontiguousarray(x)).float(), size=(size, size), mode="bilinear",
                      antialias=True, align_corners=False)
    return t.round().clamp(0, 255).to(torch.uint8).numpy()


def _stack(images: list[np.ndarray], labels: list[int], classes: list[str], where: str,
           resize: int | None = None) -> ImageSplit:
    """One array of the split's images: grey promoted to RGB where the folder mixes them, and images of
    different sizes resized at load time to ``resize`` (the only way to hold them as one tensor)."""
    if len({im.shape[2] for im in images}) > 1:  # mixed grey and colour: promote everything to RGB
        images = [np.repeat(im, 3, axis=2) if im.shape[2] == 1 else im for im in images]
    sizes = {im.shape[:2] for im in images}
    if len(sizes) > 1:
        if resize is None:
            median = int(np.median([min(im.shape[:2]) for im in images]))
            raise DataError(
                f"Images in {where} have different sizes ({', '.join(f'{h}x{w}' for h, w in sorted(sizes)[:4])}"
                f"{' ...' if len(sizes) > 4 else ''}). cnnbench holds a data set as one tensor: pass --resize N to "
                f"resize every image to N x N at load time (bilinear, aspect ratio not kept), for example "
                f"--resize {median} (the median of the images' shorter sides).")
        images = [resize_images(im.transpose(2, 0, 1)[None], resize)[0].transpose(1, 2, 0) for im in images]
    return ImageSplit(np.stack(images), np.asarray(labels, dtype=np.int64), classes)


def _check_member_name(name: str, archive: str) -> None:
    norm = posixpath.normpath(name)
    if name.startswith("/") or norm == ".." or norm.startswith("../") or "/../" in f"/{norm}/":
        raise DataError(f"Refusing archive {archive}: member {name!r} points outside the archive's folder.")


def read_image_folder_tar(path: str | os.PathLike, splits=("train", "test"), resize: int | None = None) -> dict[str, ImageSplit]:
    """Read ``<split>/<class>/<image>`` members straight from a tar, without extracting anything."""
    path = Path(path)
    members: dict[str, dict[str, list[tuple[str, tarfile.TarInfo]]]] = {s: {} for s in splits}
    try:
        tar = tarfile.open(path)
    except (tarfile.TarError, OSError) as e:
        raise DataError(f"Cannot open archive {path}: {e}.") from None
    with tar:
        for info in tar.getmembers():
            _check_member_name(info.name, str(path))
            if info.issym() or info.islnk():
                raise DataError(f"Refusing archive {path}: member {info.name!r} is a link; archives of images must hold plain files.")
            parts = posixpath.normpath(info.name).split("/")
            if parts and parts[0] == ".":
                parts = parts[1:]
            # Accept an optional top folder: <top>/<split>/<class>/<file> as well as <split>/<class>/<file>.
            if len(parts) == 4 and parts[1] in splits:
                parts = parts[1:]
            if len(parts) != 3 or parts[0] not in splits or not info.isfile():
                continue
            if not parts[2].lower().endswith(IMAGE_SUFFIXES):
                continue
            members[parts[0]].setdefault(parts[1], []).append((parts[2], info))
        out = {}
        for split in splits:
            by_class = members[split]
            if not by_class:
                raise DataError(f"Archive {path} has no images under '{split}/<class>/'. Expected {'/'.join(splits)} folders each holding one folder per class.")
            classes = sorted(by_class)
            images, labels = [], []
            for label, cls in enumerate(classes):
                for fname, info in sorted(by_class[cls], key=lambda t: t[0]):
                    f = tar.extractfile(info)
                    images.append(decode_image(f.read(), f"{path}:{info.name}"))
                    labels.append(label)
            out[split] = _stack(images, labels, classes, f"{path}:{split}", resize)
    return out


def read_image_folder_dir(path: str | os.PathLike, splits=("train", "test"), resize: int | None = None) -> dict[str, ImageSplit]:
    """Read a ``<split>/<class>/<image>`` tree from disk."""
    path = Path(path)
    out = {}
    for split in splits:
        root = path / split
        if not root.is_dir():
            raise DataError(f"{path} has no '{split}' folder. An image-folder data set needs {' and '.join(splits)} folders, each holding one folder per class.")
        classes = sorted(d.name for d in root.iterdir() if d.is_dir())
        if not classes:
            raise DataError(f"{root} holds no class folders: put each class's images in {root}/<class name>/.")
        images, labels = [], []
        for label, cls in enumerate(classes):
            files = sorted(p for p in (root / cls).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise DataError(f"Class folder {root / cls} holds no images ({', '.join(IMAGE_SUFFIXES)}). Add images or remove the folder.")
            for p in files:
                images.append(decode_image(p.read_bytes(), str(p)))
                labels.append(label)
        out[split] = _stack(images, labels, classes, str(root), resize)
    if out[splits[0]].classes != out[splits[-1]].classes:
        raise DataError(f"{path}: the class folders of {splits[0]} and {splits[-1]} differ; both splits need the same classes.")
    return out


def read_image_folder(path: str | os.PathLike, resize: int | None = None) -> dict[str, ImageSplit]:
    """``train/<class>/*`` and ``test/<class>/*`` from a folder or a tar; ``resize``: the size images of
    different sizes are brought to while loading."""
    path = Path(path)
    if path.is_dir():
        return read_image_folder_dir(path, resize=resize)
    if path.is_file():
        out = read_image_folder_tar(path, resize=resize)
        if out["train"].classes != out["test"].classes:
            raise DataError(f"{path}: the class folders of train and test differ; both splits need the same classes.")
        return out
    raise DataError(f"Image-folder data set {path} does not exist. Give a folder or a .tar holding train/<class>/* and test/<class>/*.")
