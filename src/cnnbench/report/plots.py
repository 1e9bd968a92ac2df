"""Figures (matplotlib, Agg backend: no display needed), written atomically as PNG."""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from ..fileio import write_bytes


def _figure_module():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    _figure_module().close(fig)
    return write_bytes(path, buf.getvalue())


def image_grid(images: np.ndarray, captions: list[str], path: str | Path, title: str = "", cols: int = 8) -> Path:
    """uint8 images N x C x H x W in a captioned grid."""
    plt = _figure_module()
    n = max(len(images), 1)
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols, 1.6 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, cap in zip(axes.flat, images, captions):
        if img.shape[0] == 1:
            ax.imshow(img[0], cmap="gray", vmin=0, vmax=255)
        else:
            ax.imshow(np.transpose(img, (1, 2, 0)))
        ax.set_title(cap, fontsize=7)
    if len(images) == 0:
        axes.flat[0].text(0.5, 0.5, "none", ha="center", va="center")
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def misclassified_grid(images: np.ndarray, captions: list[str], path: str | Path, title: str = "") -> Path:
    """The study's Figure 6: misclassified test images captioned ``pred / true``."""
    return image_grid(images, captions, path, title)
