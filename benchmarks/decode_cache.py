"""Loading an image folder: decoding on one thread, on the pool, and from the cache of decoded arrays.

    python benchmarks/decode_cache.py [--folder $CNNBENCH_DATA/cifar10-jpeg.tar] [--repeats 3]
    python benchmarks/decode_cache.py --make-photos /tmp/photos --folder /tmp/photos   # 300 JPEGs of 640x480

Prints the median seconds of each way and their ratios (the machine is shared: the ratios are what to read).
The cache lives in a temporary folder, so the user's cache is neither used nor filled.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

from cnnbench.data import image_folder


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def make_photos(folder: Path) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (folder / cls).mkdir(parents=True, exist_ok=True)
        base = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).resize((640, 480), Image.BILINEAR)
        for i in range(150):
            base.save(folder / cls / f"{i}.jpg", quality=90)


def main() -> None:
    root = Path(os.environ.get("CNNBENCH_DATA", "../shared/datasets"))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", default=str(root / "cifar10-jpeg.tar"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--make-photos",
        metavar="DIR",
        help="first write 2 classes x 150 JPEGs of 640x480 (quality "
        "90, smooth upscaled noise, about 80 KB each) into DIR, as a stand-in for camera photos",
    )
    args = parser.parse_args()
    if args.make_photos:
        make_photos(Path(args.make_photos))
    read = lambda **kw: image_folder.read_image_folder(args.folder, **kw)  # noqa: E731
    one_thread = image_folder.ThreadPoolExecutor

    def single():
        with mock.patch.object(image_folder, "ThreadPoolExecutor", lambda max_workers: one_thread(max_workers=1)):
            read(cache=False)

    def pooled_always():
        with mock.patch.object(image_folder, "_POOL_MIN_MEAN_BYTES", 0):
            read(cache=False)

    with tempfile.TemporaryDirectory() as cache, mock.patch.dict(os.environ, {"CNNBENCH_CACHE": cache}):
        serial = timed(single, args.repeats)
        pooled = timed(pooled_always, args.repeats)
        chosen = timed(lambda: read(cache=False), args.repeats)
        read()  # fills the cache
        cached = timed(read, args.repeats)
    print(f"{args.folder} on {os.cpu_count()} cores (median of {args.repeats}):")
    print(f"  decode, 1 thread     {serial:6.2f} s")
    print(f"  decode, thread pool  {pooled:6.2f} s  ({serial / pooled:.2f}x faster)")
    print(
        f"  decode as cnnbench chooses (pool for files of 16 KB or more on average) {chosen:6.2f} s  "
        f"({serial / chosen:.2f}x faster)"
    )
    print(f"  from the cache       {cached:6.2f} s  ({serial / cached:.1f}x faster than 1 thread)")


if __name__ == "__main__":
    main()
