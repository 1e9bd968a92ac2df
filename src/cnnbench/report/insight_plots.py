"""Figures of training dynamics and of what networks learn (drawn from the files in a run folder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .plots import _figure_module, literal, save_figure


def _show(ax, img: np.ndarray) -> None:
    """A C x H x W image (any range) scaled to [0, 1] as a whole."""
    img = img.astype(np.float32)
    lo, hi = float(img.min()), float(img.max())
    img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    if img.shape[0] == 1:
        ax.imshow(img[0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(np.transpose(img[:3], (1, 2, 0)))
    ax.set_xticks([]), ax.set_yticks([])


def dynamics_figure(
    series: dict[str, dict],
    dead: dict[str, tuple[list, list]],
    band: tuple[float, float],
    path: str | Path,
    title: str = "",
) -> Path:
    """Update-to-weight ratio and gradient norm per layer against the training step (colour: depth), the healthy
    band shaded; and the share of dead ReLU channels per stage against the epoch.

    ``series``: {layer: {"step": [...], "update_ratio": [...], "grad_norm": [...]}}, in depth order."""
    plt = _figure_module()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    cmap = plt.get_cmap("viridis")
    n = max(len(series) - 1, 1)
    for i, (layer, s) in enumerate(series.items()):
        color = cmap(i / n)
        label = layer if i in (0, len(series) - 1) else None
        axes[0].plot(s["step"], s["update_ratio"], color=color, lw=0.9, label=label)
        axes[1].plot(s["step"], s["grad_norm"], color=color, lw=0.9, label=label)
    axes[0].axhspan(*band, color="green", alpha=0.08, lw=0)
    for ax, name in zip(axes[:2], ("update / weight norm", "gradient norm")):
        ax.set_yscale("log"), ax.set_xlabel("step", fontsize=8), ax.set_title(name, fontsize=9), ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title="first / last layer", title_fontsize=7)
    for stage, (epochs, fractions) in dead.items():
        axes[2].plot(epochs, fractions, "o-", label=stage)
    axes[2].set_ylim(0, 1), axes[2].set_xlabel("epoch", fontsize=8), axes[2].grid(alpha=0.3)
    axes[2].set_title("dead ReLU channels (probe batch)", fontsize=9)
    if dead:
        axes[2].legend(fontsize=7)
    fig.tight_layout()
    if title:
        fig.suptitle(literal(title), fontsize=10, y=1.03)
    return save_figure(fig, path)


def filters_figure(snapshots: dict[int, np.ndarray], path: str | Path, title: str = "", filters: int = 16) -> Path:
    """The first ``filters`` filters of the first convolution (columns) at each snapshot epoch (rows)."""
    plt = _figure_module()
    epochs = sorted(snapshots)
    fig, axes = plt.subplots(
        len(epochs), filters, figsize=(0.55 * filters + 0.8, 0.6 * len(epochs) + 0.5), squeeze=False
    )
    for row, epoch in zip(axes, epochs):
        w = snapshots[epoch]
        for j, ax in enumerate(row):
            if j < len(w):
                _show(ax, w[j])
            else:
                ax.axis("off")
        row[0].set_ylabel(f"epoch {epoch}", fontsize=7, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(literal(title), fontsize=9)
    return save_figure(fig, path)


def feature_maps_figure(images: np.ndarray, maps: dict[str, np.ndarray], path: str | Path, title: str = "") -> Path:
    """For each image: the image, then one row per stage of its 8 most active channels."""
    plt = _figure_module()
    stages = list(maps)
    rows = len(images) * len(stages)
    fig, axes = plt.subplots(rows, 9, figsize=(9 * 0.9, rows * 0.95 + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, img in enumerate(images):
        for s, stage in enumerate(stages):
            row = axes[i * len(stages) + s]
            if s == 0:
                _show(row[0], img), row[0].axis("on")
            row[1].set_title(stage, fontsize=7, loc="left")
            for j, fm in enumerate(maps[stage][i][:8]):
                row[j + 1].imshow(fm, cmap="magma")
    if title:
        fig.suptitle(literal(title), fontsize=9)
    return save_figure(fig, path)


def gradcam_figure(
    panels: dict[str, tuple[np.ndarray, np.ndarray, list[str]]], path: str | Path, title: str = ""
) -> Path:
    """{panel: (uint8 images, heat maps in [0, 1], captions)}: each image with its heat map over it."""
    plt = _figure_module()
    cols = max(len(v[0]) for v in panels.values())
    fig, axes = plt.subplots(len(panels), cols, figsize=(1.3 * cols, 1.55 * len(panels) + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for row, (panel, (images, cams, captions)) in zip(axes, panels.items()):
        for ax, img, cam, cap in zip(row, images, cams, captions):
            _show(ax, img)
            ax.imshow(cam, cmap="jet", alpha=0.45, vmin=0, vmax=1)
            ax.set_title(literal(cap), fontsize=6)
        row[0].text(-0.1, 0.5, panel, transform=row[0].transAxes, rotation=90, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(literal(title), fontsize=9)
    return save_figure(fig, path)


def cka_figure(
    matrix: np.ndarray,
    rows: list[str],
    cols: list[str],
    path: str | Path,
    xlabel: str = "",
    ylabel: str = "",
    title: str = "",
) -> Path:
    plt = _figure_module()
    fig, ax = plt.subplots(figsize=(0.7 * len(cols) + 2, 0.55 * len(rows) + 1.2))
    im = ax.imshow(matrix, cmap="magma", vmin=0, vmax=1)
    ax.set_xticks(range(len(cols)), [literal(c) for c in cols], fontsize=7, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), [literal(r) for r in rows], fontsize=7)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(
                j,
                i,
                f"{matrix[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=6,
                color="black" if matrix[i, j] > 0.6 else "white",
            )
    ax.set_xlabel(literal(xlabel), fontsize=8), ax.set_ylabel(literal(ylabel), fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if title:
        ax.set_title(literal(title), fontsize=9)
    return save_figure(fig, path)


def landscape_figure(curves: dict[str, dict[str, tuple[list, list]]], path: str | Path, title: str = "") -> Path:
    """{slice: {label: (x, loss)}}: one panel per slice (random direction; init -> final), one line per model."""
    plt = _figure_module()
    xlabels = {
        "direction": "step along a filter-normalised random direction",
        "init_to_final": "t (0 = init, 1 = trained)",
    }
    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.2), squeeze=False)
    for ax, (name, per) in zip(axes[0], curves.items()):
        for label, (x, loss) in per.items():
            ax.plot(x, loss, "o-", ms=3, label=literal(label))
        ax.set_yscale("log"), ax.grid(alpha=0.3), ax.set_xlabel(xlabels.get(name, name), fontsize=8)
        ax.set_ylabel("training loss", fontsize=8), ax.legend(fontsize=7)
    fig.tight_layout()
    if title:
        fig.suptitle(literal(title), fontsize=10, y=1.04)
    return save_figure(fig, path)


def landscape_plane_figure(x: np.ndarray, y: np.ndarray, loss: np.ndarray, path: str | Path, title: str = "") -> Path:
    plt = _figure_module()
    fig, ax = plt.subplots(figsize=(4, 3.4))
    cs = ax.contourf(x, y, np.log10(loss), levels=20, cmap="viridis")
    fig.colorbar(cs, ax=ax, label="log10 loss")
    ax.plot([0], [0], "r+")
    if title:
        ax.set_title(literal(title), fontsize=9)
    return save_figure(fig, path)
