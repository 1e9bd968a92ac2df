"""Folders of images (a directory or a tar) as data sets: their two layouts, parallel decoding, and a cache.

Layouts: ``train/<class>/*`` and ``test/<class>/*``, or only ``<class>/*`` (the common case), from which the caller
holds out a test split (``hold_out``). Decoding runs on a thread pool (PIL releases the GIL while it decodes) with a
progress line on a terminal; the decoded arrays are cached, keyed by the files' names, sizes and modification
times and by the resize, so the next run or the next model of a study starts in seconds.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import sys
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from .readers import IMAGE_SUFFIXES, decode_image, resize_images

SPLITS = ("train", "test")
ALL = "all"  # the one group of a folder without train/test folders
CACHE_VERSION = 2  # bump when decoding (2: 16-bit grey scaled) or the key changes what a cached array holds
_CHUNK = 256  # images per decoding task: large enough that the pool's overhead vanishes
_MAX_NAMED = 10  # unreadable files named in the message; the rest are counted
# Threads pay off only where decoding (which releases the GIL) outweighs Python's share of the work: on 2 cores
# 1.13x for 640x480 JPEGs, but 0.84x for CIFAR-10's 0.9 KB ones (benchmarks/decode_cache.py, BENCHMARKS.md).
_POOL_MIN_MEAN_BYTES = 16 * 1024


@dataclass(frozen=True)
class ImageSplit:
    images: np.ndarray  # uint8, N x H x W x C
    labels: np.ndarray  # int64, N
    classes: list[str]
    files: tuple[str, ...] = ()  # each image's path inside the folder or archive


@dataclass(frozen=True)
class _Entry:
    group: str  # "train", "test" or ALL
    cls: str
    name: str  # path inside the folder or archive, as messages and records show it
    key: str  # the source's own name for it (an archive's member name)


def cache_root() -> Path:
    """Where decoded folders are kept: $CNNBENCH_CACHE, else cnnbench's per-user cache folder."""
    env = os.environ.get("CNNBENCH_CACHE")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "cnnbench" / "decoded"


def _group_of(parts: list[str], split_layout: bool) -> tuple[str, str] | None:
    """(group, class) of a file at ``parts`` (relative path split on '/'), or None when it is not in the layout."""
    if split_layout:
        if len(parts) == 4 and parts[1] in SPLITS:  # an optional top folder: <top>/<split>/<class>/<file>
            parts = parts[1:]
        return (parts[0], parts[1]) if len(parts) == 3 and parts[0] in SPLITS else None
    return (ALL, parts[0]) if len(parts) == 2 else None


def _entries(names: list[str]) -> tuple[list[_Entry], bool]:
    """The images among ``names`` (relative paths) and whether the folder has train/test folders."""
    split_parts = [p for p in (n.split("/") for n in names) if p[0] in SPLITS or (len(p) == 4 and p[1] in SPLITS)]
    split_layout = bool(split_parts)
    shown = list(names)
    if not split_layout:
        tops = {n.split("/")[0] for n in names}
        if len(tops) == 1 and all(n.count("/") == 2 for n in names):  # <top>/<class>/<file>: drop the top folder
            shown = [n.split("/", 1)[1] for n in names]
    out = []
    for key, name in zip(names, shown):
        where = _group_of(name.split("/"), split_layout)
        if where and name.lower().endswith(IMAGE_SUFFIXES):
            out.append(_Entry(where[0], where[1], name, key))
    order = {ALL: 0, **{s: i for i, s in enumerate(SPLITS)}}
    return sorted(out, key=lambda e: (order[e.group], e.cls, e.name)), split_layout


def _image_files(root: Path) -> list[Path]:
    """Image files under ``root``, sorted. Symbolic links are followed alike for files and for folders (a class
    folder linked in from elsewhere counts as one); a link back to a folder already walked is skipped."""
    found, seen = [], set()
    for folder, dirs, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:  # a link loop, or the same folder linked twice
            dirs[:] = []
            continue
        seen.add(real)
        found += [Path(folder) / n for n in names if Path(n).suffix.lower() in IMAGE_SUFFIXES]
    return sorted(p for p in found if p.is_file())


class _Source:
    """The files of a folder or an archive: their names, a fingerprint for the cache, and their bytes."""

    def __init__(self, path: Path):
        self.path = path
        self.tar = path.is_file()
        if self.tar:
            try:
                with tarfile.open(path) as tar:
                    members = tar.getmembers()
            except (tarfile.TarError, OSError) as e:
                raise DataError(f"Cannot open archive {path}: {e}. Give a folder or a .tar of images.") from None
            for info in members:
                _check_member(info, path)
            self.members = {self._clean(i.name): i for i in members if i.isfile()}
            self.sizes = {name: info.size for name, info in self.members.items()}
            st = path.stat()
            with open(path, "rb") as f:  # the archive's first 64 KB: its first members' headers and bytes
                head = hashlib.sha256(f.read(1 << 16)).hexdigest()
            stamp = [f"{st.st_size}\t{st.st_mtime_ns}\t{st.st_ctime_ns}\t{head}"]
        else:
            files = _image_files(path)
            self.members = {p.relative_to(path).as_posix(): p for p in files}
            stats = {name: p.stat() for name, p in self.members.items()}
            self.sizes = {name: st.st_size for name, st in stats.items()}
            # ctime too: copying files with their times kept (cp -p, rsync -t) keeps mtime but never ctime
            stamp = [f"{name}\t{st.st_size}\t{st.st_mtime_ns}\t{st.st_ctime_ns}" for name, st in stats.items()]
        # The resolved path first: two folders holding files of the same names, sizes and times are not one data set.
        self.stamp = "\n".join([str(path.resolve()), *stamp])

    @staticmethod
    def _clean(name: str) -> str:
        parts = posixpath.normpath(name).split("/")
        return "/".join(parts[1:] if parts[0] == "." else parts)

    def label(self, name: str) -> str:
        return f"{self.path}:{name}" if self.tar else str(self.path / name)

    def read_all(self, entries: list[_Entry]) -> list[bytes] | None:
        """Every entry's bytes for an archive (one sequential pass: a tar cannot be read from several threads);
        None for a folder, whose files the decoding threads read themselves."""
        if not self.tar:
            return None
        with tarfile.open(self.path) as tar:
            return [tar.extractfile(self.members[e.key]).read() for e in entries]

    def read(self, name: str) -> bytes:
        return self.members[name].read_bytes()


def _check_member(info: tarfile.TarInfo, archive: Path) -> None:
    norm = posixpath.normpath(info.name)
    if info.name.startswith("/") or norm == ".." or norm.startswith("../") or "/../" in f"/{norm}/":
        raise DataError(f"Refusing archive {archive}: member {info.name!r} points outside the archive's folder.")
    if info.issym() or info.islnk():
        raise DataError(
            f"Refusing archive {archive}: member {info.name!r} is a link; archives of images must hold plain files."
        )


class _Progress:
    """A one-line counter on a terminal (stderr); silent in logs and pipes."""

    def __init__(self, total: int, what: str):
        self.total, self.what, self.done = total, what, 0
        self.tty = sys.stderr.isatty() and total >= 2 * _CHUNK
        self._last = 0.0

    def add(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if self.tty and (now - self._last > 0.2 or self.done == self.total):
            self._last = now
            end = "\n" if self.done == self.total else ""
            sys.stderr.write(
                f"\rdecoding {self.what}: {self.done:,}/{self.total:,} images ({self.done / self.total:.0%}){end}"
            )
            sys.stderr.flush()


def _decode_chunk(source: _Source, entries: list[_Entry], blobs: list[bytes] | None):
    images, failures = [], []
    for i, e in enumerate(entries):
        try:
            data = blobs[i] if blobs is not None else source.read(e.key)
            images.append(decode_image(data, source.label(e.name)))
        except (DataError, OSError) as err:
            images.append(None)
            failures.append(
                (source.label(e.name), str(err).split(": ", 1)[-1] if isinstance(err, DataError) else str(err))
            )
    return images, failures


def _decode(source: _Source, entries: list[_Entry]) -> list[np.ndarray]:
    """Decode every entry on a thread pool; every unreadable file is named in one error."""
    blobs = source.read_all(entries)
    chunks = [
        (entries[i : i + _CHUNK], None if blobs is None else blobs[i : i + _CHUNK])
        for i in range(0, len(entries), _CHUNK)
    ]
    progress = _Progress(len(entries), str(source.path))
    images, failures = [], []
    mean_bytes = sum(source.sizes[e.key] for e in entries) / max(len(entries), 1)
    workers = min(8, os.cpu_count() or 1) if mean_bytes >= _POOL_MIN_MEAN_BYTES else 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = (
            pool.map(lambda c: _decode_chunk(source, *c), chunks)
            if workers > 1
            else (_decode_chunk(source, *c) for c in chunks)
        )
        for chunk_images, chunk_failures in results:
            images += chunk_images
            failures += chunk_failures
            progress.add(len(chunk_images))
    if failures:
        named = "; ".join(f"{name} ({why.rstrip('.')})" for name, why in failures[:_MAX_NAMED])
        more = f"; and {len(failures) - _MAX_NAMED} more" if len(failures) > _MAX_NAMED else ""
        raise DataError(
            f"{len(failures)} of the {len(entries)} images in {source.path} cannot be read: {named}{more}. "
            "Remove or replace these files, then run again."
        )
    return images


def _stack(
    images: list[np.ndarray], entries: list[_Entry], classes: list[str], where: str, resize: int | None
) -> ImageSplit:
    """One array of a group's images: grey promoted to RGB where the folder mixes them, and images of different
    sizes resized to ``resize`` x ``resize`` (bilinear, antialiased, aspect ratio not kept) while loading."""
    if len({im.shape[2] for im in images}) > 1:  # mixed grey and colour: promote everything to RGB
        images = [np.repeat(im, 3, axis=2) if im.shape[2] == 1 else im for im in images]
    sizes = {im.shape[:2] for im in images}
    if resize is not None or len(sizes) > 1:
        if resize is None:
            median = int(np.median([min(im.shape[:2]) for im in images]))
            raise DataError(
                f"Images in {where} have different sizes ({', '.join(f'{h}x{w}' for h, w in sorted(sizes)[:4])}"
                f"{' ...' if len(sizes) > 4 else ''}). cnnbench holds a data set as one tensor: pass --resize N to "
                f"resize every image to N x N at load time (bilinear, aspect ratio not kept), for example "
                f"--resize {median} (the median of the images' shorter sides)."
            )
        images = [resize_images(im.transpose(2, 0, 1)[None], resize)[0].transpose(1, 2, 0) for im in images]
    labels = np.asarray([classes.index(e.cls) for e in entries], dtype=np.int64)
    return ImageSplit(np.stack(images), labels, classes, tuple(e.name for e in entries))


def _check_classes(groups: dict[str, list[_Entry]], path: Path, split_layout: bool) -> None:
    if not path.is_file():  # a class folder without images is a mistake worth naming (an archive has no empty folders)
        for folder in [path / s for s in SPLITS] if split_layout else [path]:
            for d in sorted(folder.iterdir()) if folder.is_dir() else ():
                if d.is_dir() and not any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in d.iterdir()):
                    raise DataError(
                        f"Class folder {d} holds no images ({', '.join(IMAGE_SUFFIXES)}). Add images or "
                        "remove the folder."
                    )
    if split_layout:
        for split in SPLITS:
            if not groups.get(split):
                raise DataError(
                    f"{path} has no images under '{split}/<class>/'. A folder with train and test folders "
                    f"needs both, each holding one folder per class (or give only class folders, and "
                    f"cnnbench holds out a test split)."
                )
        classes = [sorted({e.cls for e in groups[s]}) for s in SPLITS]
        if classes[0] != classes[1]:
            raise DataError(
                f"{path}: the class folders of train ({', '.join(classes[0])}) and test "
                f"({', '.join(classes[1])}) differ; both splits need the same classes."
            )
    elif not groups.get(ALL):
        raise DataError(
            f"{path} holds no images in class folders. Lay it out as <class>/<image> (cnnbench holds out "
            f"a test split) or as train/<class>/<image> and test/<class>/<image>; images end in "
            f"{', '.join(IMAGE_SUFFIXES)}."
        )


def _cache_file(source: _Source, resize: int | None) -> Path:
    key = hashlib.sha256(f"v{CACHE_VERSION}\nresize={resize}\n{source.stamp}".encode()).hexdigest()[:24]
    return cache_root() / f"{key}.npz"


def _load_cached(path: Path) -> dict[str, ImageSplit] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            groups = [str(g) for g in z["groups"]]
            classes = [str(c) for c in z["classes"]]
            return {
                g: ImageSplit(z[f"{g}_images"], z[f"{g}_labels"], classes, tuple(str(f) for f in z[f"{g}_files"]))
                for g in groups
            }
    except (OSError, KeyError, ValueError):  # absent, or a partial or older file: decode again
        return None


def _save_cached(path: Path, groups: dict[str, ImageSplit]) -> None:
    """Best effort: a cache that cannot be written (read-only home, full disk) only costs the next run time."""
    arrays = {"groups": np.array(list(groups)), "classes": np.array(next(iter(groups.values())).classes)}
    for g, split in groups.items():
        arrays.update({f"{g}_images": split.images, f"{g}_labels": split.labels, f"{g}_files": np.array(split.files)})
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    except OSError:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def read_image_folder(path: str | os.PathLike, resize: int | None = None, cache: bool = True) -> dict[str, ImageSplit]:
    """A folder or a tar of images: ``{"train": ..., "test": ...}`` when it has train/ and test/ folders, else
    ``{"all": ...}`` (class folders only). ``resize``: every image is brought to ``resize`` x ``resize`` while
    loading (needed when their sizes differ). Decoded arrays are cached (see ``cache_root``)."""
    path = Path(path)
    if not path.exists():
        raise DataError(
            f"Image-folder data set {path} does not exist. Give a folder or a .tar holding <class>/<image> "
            "files, or train/<class>/* and test/<class>/*."
        )
    source = _Source(path)
    cache_file = _cache_file(source, resize)
    if cache:
        cached = _load_cached(cache_file)
        if cached is not None:
            return cached
    entries, split_layout = _entries(list(source.members))
    groups: dict[str, list[_Entry]] = {}
    for e in entries:
        groups.setdefault(e.group, []).append(e)
    _check_classes(groups, path, split_layout)
    classes = sorted({e.cls for e in entries})
    images = _decode(source, entries)
    out, start = {}, 0
    for group in SPLITS if split_layout else (ALL,):
        members = groups[group]
        out[group] = _stack(
            images[start : start + len(members)],
            members,
            classes,
            f"{path}/{group}" if split_layout else str(path),
            resize,
        )
        start += len(members)
    if cache:
        _save_cached(cache_file, out)
    return out


def hold_out(labels: np.ndarray, classes: list[str], fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices: ``fraction`` of every class held out (at least one image, never all), drawn with a
    fixed seed so that every run and every model of a study holds out the same images."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < 2:
            raise DataError(
                f"Class {classes[int(c)]!r} has only {len(idx)} image: holding out a test split needs at least two "
                "images per class. Add images to it, or give train/ and test/ folders yourself."
            )
        n_test = min(len(idx) - 1, max(1, round(fraction * len(idx))))
        idx = rng.permutation(idx)
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))
