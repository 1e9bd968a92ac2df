"""Split the CIFAR-10 JPEG tar into a small "user" data set and a disjoint pretraining set (RESULTS, fine-tuning).

    python scripts/make_finetune_data.py $CNNBENCH_DATA/cifar10-jpeg.tar OUT_DIR [--per-class 100]

writes two tars of the ImageFolder layout cnnbench reads (``train/<class>/*``, ``test/<class>/*``):
- ``cifar10-small.tar``: the first ``--per-class`` training images of each class (sorted file names) and the whole
  test split: a small data set of the kind a user brings, scored on 10,000 images so the comparison is not noise;
- ``cifar10-rest.tar``: every other training image (disjoint from the small set) and the same test split, which the
  pretraining run only reports on (it trains a fixed number of epochs and keeps its last weights: nothing is chosen
  on it);
- ``photos/<class>/*.jpg``: the small set's training images as most people keep photos (class folders, no split),
  for the docs' walk-through (docs/data.md).
"""

from __future__ import annotations

import argparse
import posixpath
import tarfile
from pathlib import Path


def split_members(tar: tarfile.TarFile, per_class: int):
    train: dict[str, list[tarfile.TarInfo]] = {}
    test = []
    for info in tar.getmembers():
        if not info.isfile():
            continue
        parts = posixpath.normpath(info.name).split("/")
        if parts[-3] == "train":
            train.setdefault(parts[-2], []).append(info)
        elif parts[-3] == "test":
            test.append(info)
    small, rest = [], []
    for cls in sorted(train):
        members = sorted(train[cls], key=lambda i: i.name)
        small += members[:per_class]
        rest += members[per_class:]
    return small, rest, test


def write(source: tarfile.TarFile, members, out: Path) -> None:
    with tarfile.open(out, "w") as dst:
        for info in members:
            dst.addfile(info, source.extractfile(info))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cifar_tar")
    parser.add_argument("out_dir")
    parser.add_argument("--per-class", type=int, default=100)
    args = parser.parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(args.cifar_tar) as tar:
        small, rest, test = split_members(tar, args.per_class)
        write(tar, small + test, out / "cifar10-small.tar")
        write(tar, rest + test, out / "cifar10-rest.tar")
        for info in small:
            cls, name = info.name.split("/")[-2:]
            (out / "photos" / cls).mkdir(parents=True, exist_ok=True)
            (out / "photos" / cls / name).write_bytes(tar.extractfile(info).read())
    print(
        f"{out / 'cifar10-small.tar'}: {len(small)} train, {len(test)} test; "
        f"{out / 'cifar10-rest.tar'}: {len(rest)} train, {len(test)} test; {out / 'photos'}: {len(small)} images"
    )


if __name__ == "__main__":
    main()
