"""Readers for the file formats data sets come in; each validates its input and names the bad file."""

from __future__ import annotations

import gzip
import io
import os
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
        raise DataError(
            f"Cannot read idx file {path}: {e}. Replace it with a good copy of the original file."
        ) from None
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


def decode_image(data: bytes, name: str) -> np.ndarray:
    """H x W x C uint8 (C = 1 for grey images, else 3): palettes, alpha and 16-bit grey converted."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.mode.startswith("I"):  # 16-bit (or 32-bit) grey: scaled to 8 bits, not clipped at 255
                wide = np.asarray(img).astype(np.float64)
                top = 65535.0 if img.mode.startswith("I;16") or wide.max() > 255 else 255.0
                arr = np.round(np.clip(wide, 0, top) * (255.0 / top)).astype(np.uint8)
            else:
                img = img.convert("L" if img.mode in ("L", "1") else "RGB")
                arr = np.asarray(img, dtype=np.uint8)
    except Image.DecompressionBombError as e:
        raise DataError(
            f"Refusing to decode {name}: {e} (a decompression bomb, or a far larger image than a classifier needs). "
            "Remove it, or shrink it first."
        ) from None
    except UnidentifiedImageError:  # its own message names an in-memory buffer, not the file
        raise DataError(
            f"Cannot decode image {name}: not an image format Pillow reads, or a damaged file. Remove or replace it."
        ) from None
    except (OSError, ValueError, SyntaxError) as e:
        raise DataError(f"Cannot decode image {name}: {e}. Remove or replace this file.") from None
    return arr[:, :, None] if arr.ndim == 2 else arr


def resize_images(x: np.ndarray, size: int | None) -> np.ndarray:
    """N x C x H x W uint8 squashed to size x size (bilinear, antialiased; the aspect ratio is not kept)."""
    import torch
    import torch.nn.functional as F

    if size is None or x.shape[-2:] == (size, size):
        return x
    t = F.interpolate(
        torch.from_numpy(np.ascontiguousarray(x)).float(),
        size=(size, size),
        mode="bilinear",
        antialias=True,
        align_corners=False,
    )
    return t.round().clamp(0, 255).to(torch.uint8).numpy()
