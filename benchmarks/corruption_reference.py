"""How far cnnbench's two substitute corruptions are from the reference's: motion blur and snow.

CIFAR-10-C's generator (Hendrycks & Dietterich, make_cifar_c.py) blurs with ImageMagick's motion blur (through
Wand); cnnbench rebuilds that kernel in PyTorch so that it needs no ImageMagick. This script runs the reference's
recipe with the real ImageMagick on the same CIFAR-10 test images and compares the mean absolute pixel change
against the clean image, per severity (the measure an audit used for all 15 corruptions). Needs ImageMagick's
library and Wand, which cnnbench itself does not:

    apt-get install libmagickwand-dev && pip install Wand
    CNNBENCH_DATA=../shared/datasets python benchmarks/corruption_reference.py --images 200
"""

from __future__ import annotations

import argparse
import io

import numpy as np
import torch
from PIL import Image
from scipy.ndimage import zoom as nd_zoom

from cnnbench.analysis.robustness import corruptions as C
from cnnbench.data import DataOptions, load_dataset


def magick_motion_blur(image: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """ImageMagick's motion blur of a uint8 image (H, W) or (H, W, 3), through a PNG as the reference does."""
    from wand.image import Image as WandImage

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    with WandImage(blob=buffer.getvalue()) as wand:
        wand.motion_blur(radius=radius, sigma=sigma, angle=angle)
        blob = wand.make_blob("png")
    # ImageMagick picks the PNG's colour type (grey, palette, RGB) by content: decode to what went in, as cv2 does
    return np.asarray(Image.open(io.BytesIO(blob)).convert("RGB" if image.ndim == 3 else "L"))


def centre_zoom(layer: np.ndarray, factor: float) -> np.ndarray:
    """The reference's clipped zoom of a square (H, W, 1) array: the centre crop enlarged, trimmed to H x W."""
    h = layer.shape[0]
    crop = int(np.ceil(h / factor))
    top = (h - crop) // 2
    out = nd_zoom(layer[top : top + crop, top : top + crop], (factor, factor, 1), order=1)
    trim = (out.shape[0] - h) // 2
    return out[trim : trim + h, trim : trim + h]


def reference_motion_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    radius, sigma = C.CIFAR["motion_blur"].severities[severity - 1]
    return magick_motion_blur(x, radius, sigma, rng.uniform(-45, 45)).astype(np.float64)


def reference_snow(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    loc, scale, zoom, threshold, radius, sigma, blend = C.CIFAR["snow"].severities[severity - 1]
    x = x.astype(np.float32) / 255
    layer = centre_zoom(rng.normal(loc, scale, size=x.shape[:2])[..., None], zoom)
    layer[layer < threshold] = 0
    layer8 = (np.clip(layer.squeeze(), 0, 1) * 255).astype(np.uint8)
    layer = magick_motion_blur(layer8, radius, sigma, rng.uniform(-135, -45)).astype(np.float64) / 255
    layer = layer[..., None]
    grey = (x @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
    x = blend * x + (1 - blend) * np.maximum(x, grey * 1.5 + 0.5)
    return np.clip(x + layer + np.rot90(layer, k=2), 0, 1) * 255


REFERENCE = {"motion_blur": reference_motion_blur, "snow": reference_snow}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=200, help="class-balanced CIFAR-10 test images")
    args = p.parse_args()
    data = load_dataset("cifar10", options=DataOptions(limit_train=10, limit_test=args.images))
    clean = data.test_x  # uint8 (N, 3, 32, 32)
    hwc = clean.permute(0, 2, 3, 1).numpy()
    rng = np.random.default_rng(0)
    print(f"{len(clean)} CIFAR-10 test images (JPEG copy); mean absolute change in pixel levels (0-255)")
    print("| corruption | severity | reference (ImageMagick) | cnnbench | cnnbench / reference |")
    print("|---|---|---|---|---|")
    for name, reference in REFERENCE.items():
        for severity in range(1, 6):
            ref = np.mean([np.abs(reference(img, severity, rng) - img).mean() for img in hwc])
            ours = (C.corrupt(name, clean, severity, seed=severity).float() - clean.float()).abs().mean().item()
            print(f"| {name} | {severity} | {ref:.2f} | {ours:.2f} | {ours / ref:.2f} |", flush=True)


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
