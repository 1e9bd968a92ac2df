"""Build the MNIST demo subset shipped inside the package (src/cnnbench/data/builtin/mnist_demo.npz).

A class-balanced slice of the canonical files: the first 500 training and 100 test images of each
digit, in file order. Run from the repository root:

    python scripts/make_demo_data.py --data-dir ../shared/datasets
"""

from __future__ import annotations

import argparse
import hashlib
import io
from pathlib import Path

import numpy as np

from cnnbench.data.loader import balanced_indices
from cnnbench.data.sources import load_raw
from cnnbench.fileio import write_bytes

OUT = Path(__file__).resolve().parents[1] / "src" / "cnnbench" / "data" / "builtin" / "mnist_demo.npz"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", required=True)
    p.add_argument("--train", type=int, default=5000)
    p.add_argument("--test", type=int, default=1000)
    args = p.parse_args()
    raw = load_raw("mnist", args.data_dir, download=False)
    tr, te = balanced_indices(raw.train_y, args.train), balanced_indices(raw.test_y, args.test)
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        train_x=raw.train_x[tr],
        train_y=raw.train_y[tr].astype(np.uint8),
        test_x=raw.test_x[te],
        test_y=raw.test_y[te].astype(np.uint8),
        train_index=tr.astype(np.int32),
        test_index=te.astype(np.int32),
    )
    write_bytes(OUT, buf.getvalue())
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB, sha256 {hashlib.sha256(buf.getvalue()).hexdigest()[:16]})")


if __name__ == "__main__":
    main()
