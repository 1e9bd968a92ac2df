"""Write src/cnnbench/analysis/robustness/frost_photos.npz: CIFAR-10-C's frost photographs at the size it crops them.

make_cifar_c.py (Hendrycks & Dietterich, 2019) reads one of frost1.png ... frost5.jpg (its ``randint(5)`` never
picks frost6), shrinks it with ``cv2.resize(fx=0.2, fy=0.2)`` (bilinear, no antialiasing), takes a random 32 x 32
crop and converts BGR to RGB. This script does the same shrinking once, so cnnbench ships 170 KB of small photographs
instead of 2 MB of large ones and needs no OpenCV. The photographs come from the `imagecorruptions` package
(Michaelis et al., 2019; Apache License 2.0, the same photographs as the reference repository hendrycks/robustness,
also Apache 2.0):

    pip download --no-deps imagecorruptions==1.1.2 && unzip imagecorruptions-1.1.2-py3-none-any.whl
    python scripts/make_frost_photos.py imagecorruptions/frost

torch's bilinear resize with align_corners=False, no antialiasing and a scale factor samples where cv2's INTER_LINEAR
does (half-pixel centres, a step of 1 / 0.2 = 5 source pixels: exactly the source pixel 5 i + 2).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

NAMES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")  # randint(5): frost6 is never drawn
SCALE = 0.2
OUT = Path(__file__).resolve().parents[1] / "src" / "cnnbench" / "analysis" / "robustness" / "frost_photos.npz"


def shrink(rgb: np.ndarray, scale: float = SCALE) -> np.ndarray:
    """cv2.resize(img, (0, 0), fx=scale, fy=scale): output size rounded, bilinear at half-pixel centres."""
    x = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).double()
    # scale_factor, not a size: source coordinates then step by exactly 1 / scale, as cv2's do given fx and fy
    # (torch floors the output size, cv2 rounds it: the same for these photographs, checked below)
    y = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False, antialias=False)
    assert y.shape[-2:] == tuple(round(n * scale) for n in rgb.shape[:2])
    return y.round().clamp(0, 255).squeeze(0).permute(1, 2, 0).numpy().astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the folder holding frost1.png ... frost5.jpg")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    photos = {Path(n).stem: shrink(np.array(Image.open(args.folder / n).convert("RGB"))) for n in NAMES}
    np.savez_compressed(args.out, **photos)
    for name, p in photos.items():
        print(f"{name}: {p.shape[0]}x{p.shape[1]}, mean {p.mean() / 255:.3f}, std {p.std() / 255:.3f}")
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
