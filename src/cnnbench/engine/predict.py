"""A trained run used outside training: its preprocessing, and class probabilities for image files."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..config import config_from_dict
from ..data.loader import load_dataset, normalize, pad_images
from ..data.readers import IMAGE_SUFFIXES, decode_image, resize_images
from ..errors import ConfigError, DataError
from ..fileio import read_json
from ..models import create_model
from .averaging import evaluated_weights
from .evaluate_run import latest_state
from .train import data_options


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the model's input, exactly as in training: decoded to grey or RGB, resized to
    ``resize`` (bilinear, antialiased) if set, zero-padded to ``pad_to`` if smaller, then (x / 255 - mean) / std."""

    classes: list[str]
    input_shape: tuple[int, int, int]  # C x H x W the model takes
    mean: list[float]
    std: list[float]
    resize: int | None
    pad_to: int | None

    def to_dict(self) -> dict:
        return {
            **dataclasses.asdict(self),
            "input_shape": list(self.input_shape),
            "input": "float32 N x C x H x W, "
            "pixels in [0, 255] scaled to [0, 1], then minus mean and divided by std, per channel",
        }


def load_trained(run_dir: str | Path, device: torch.device) -> tuple[nn.Module, Preprocessing]:
    """The run's model (latest checkpoint, eval mode) and its preprocessing, read from the run folder."""
    run_dir = Path(run_dir)
    if not (run_dir / "summary.json").exists():
        raise ConfigError(
            f"{run_dir} holds no finished run (no summary.json): give the --out folder of a finished "
            "`cnnbench train`, or a folder under a study's runs/."
        )
    summary = read_json(run_dir / "summary.json")
    cfg = config_from_dict(summary["config"], where=f"{run_dir / 'summary.json'}")
    norm = summary.get("normalization")
    if norm is None:  # runs from before it was recorded: the statistics come from the training split again
        data = load_dataset(cfg.dataset, cfg.data_dir, dataclasses.replace(data_options(cfg), limit_test=1))
        norm = {"mean": data.mean.tolist(), "std": data.std.tolist()}
    prep = Preprocessing(
        list(summary["classes"]), tuple(summary["input_shape"]), norm["mean"], norm["std"], cfg.resize, cfg.pad_to
    )
    state = latest_state(run_dir)
    model = create_model(cfg.model, num_classes=len(prep.classes), in_chans=prep.input_shape[0], variant=cfg.variant)
    model.load_state_dict(evaluated_weights(state))
    return model.to(device).eval(), prep


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
    x = pad_images(resize_images(img.transpose(2, 0, 1)[None], prep.resize), prep.pad_to)[0]
    if tuple(x.shape) != tuple(prep.input_shape):
        raise DataError(
            f"{path}: {img.shape[0]}x{img.shape[1]} pixels, but the model takes "
            f"{prep.input_shape[1]}x{prep.input_shape[2]} (the run trained with resize={prep.resize}, "
            f"pad_to={prep.pad_to}); resize the image to that size first"
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
