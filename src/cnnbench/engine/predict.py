"""A trained run used outside training: its preprocessing, and class probabilities for image files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..data.loader import normalize, pad_images
from ..data.readers import IMAGE_SUFFIXES, decode_image, resize_images
from ..errors import DataError
from .run_folder import Preprocessing, open_run


def load_trained(run_dir: str | Path, device: torch.device) -> tuple[nn.Module, Preprocessing]:
    """The run's model (latest checkpoint, eval mode, float32) and its preprocessing, read from the run folder."""
    run = open_run(run_dir, device, channels_last=False)
    return run.model, run.preprocessing


def image_files(paths: list[str | Path]) -> tuple[list[Path], list[str]]:
    """Image files named directly or found in folders (recursively, sorted); and a message per path not found."""
    files, missing = [], []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            files.append(p)
        else:
            missing.append(f"{p}: no such file or folder")
    return files, missing


def prepare_image(path: Path, prep: Preprocessing) -> np.ndarray:
    """One image file as C x H x W uint8, as training prepared its images; DataError naming the file if not."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror or e})") from None
    try:
        img = decode_image(data, str(path))
    except DataError:
        raise DataError(f"{path}: not an image PIL can decode") from None
    channels = prep.input_shape[0]
    if img.shape[2] != channels:  # the model's colour mode: RGB -> grey by luminance, grey -> three equal channels
        img = (
            np.repeat(img, 3, axis=2)
            if channels == 3
            else np.round(img @ [0.299, 0.587, 0.114])[..., None].astype(np.uint8)
        )
    sized = resize_images(img.transpose(2, 0, 1)[None], prep.resize)
    h, w = sized.shape[-2:]
    # Padding is for images of the training images' own size (MNIST's 28 px to 32), never a way to make a small
    # image fit: a 1x1 image padded to 32x32 would get a confident answer about nothing. Runs from before the
    # size was recorded accept images down to three quarters of the input.
    want = prep.image_size or (prep.input_shape[1], prep.input_shape[2])
    small = (h, w) != tuple(want) if prep.image_size else min(h / want[0], w / want[1]) < 0.75
    x = pad_images(sized, prep.pad_to)[0]
    if small or tuple(x.shape) != tuple(prep.input_shape):
        raise DataError(
            f"{path}: {img.shape[0]}x{img.shape[1]} pixels, but the run trained on {want[0]}x{want[1]} images "
            f"(resize={prep.resize}, pad_to={prep.pad_to}); resize the image to that size first"
        )
    return x


@torch.inference_mode()
def predict_files(
    model: nn.Module,
    prep: Preprocessing,
    files: list[Path],
    device: torch.device,
    top_k: int = 5,
    batch_size: int = 256,
) -> tuple[list[dict], list[str]]:
    """Top-k classes and probabilities per readable file, in order; and one message per file that failed."""
    ready, errors = [], []
    for f in files:
        try:
            ready.append((f, prepare_image(f, prep)))
        except DataError as e:
            errors.append(str(e))
    k = min(top_k, len(prep.classes))
    mean, std = torch.tensor(prep.mean, device=device), torch.tensor(prep.std, device=device)
    rows = []
    for start in range(0, len(ready), batch_size):
        chunk = ready[start : start + batch_size]
        x = torch.from_numpy(np.stack([a for _, a in chunk])).to(device)
        probs = torch.softmax(model(normalize(x, mean, std, channels_last=False)).float(), 1)
        p, idx = probs.topk(k, dim=1)
        for (f, _), pk, ik in zip(chunk, p.tolist(), idx.tolist()):
            rows.append(
                {
                    "file": str(f),
                    **{f"class_{i + 1}": prep.classes[c] for i, c in enumerate(ik)},
                    **{f"prob_{i + 1}": v for i, v in enumerate(pk)},
                }
            )
    return rows, errors
