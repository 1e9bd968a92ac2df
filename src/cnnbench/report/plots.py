"""Figures (matplotlib, Agg backend: no display needed), written atomically as PNG."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..fileio import write_bytes
from ..layout import MISCLASSIFIED_CSV, MISCLASSIFIED_PNG


def _figure_module():
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font", category=UserWarning)
    return plt


def literal(text: str | None) -> str | None:
    """Text that comes from data (class names, model and data set names, paths), escaped where it is drawn so that
    matplotlib prints "$x$" as written instead of reading it as mathtext. Only there: axis labels such as log ticks'
    "10^-1" need mathtext on, so it is never turned off for the whole figure."""
    return None if text is None else str(text).replace("$", r"\$")


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
    fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols, 1.6 * rows + 0.4), squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, cap in zip(axes.flat, images, captions):
        if img.shape[0] == 1:
            ax.imshow(img[0], cmap="gray", vmin=0, vmax=255)
        else:
            ax.imshow(np.transpose(img, (1, 2, 0)))
        ax.set_title(literal(cap), fontsize=7)
    if len(images) == 0:
        axes.flat[0].text(0.5, 0.5, "none", ha="center", va="center")
    if title:
        fig.suptitle(literal(title), fontsize=9)
    return save_figure(fig, path, dpi=80)  # 32 px images need no more; the report stays small


def misclassified_grid(images: np.ndarray, captions: list[str], path: str | Path, title: str = "") -> Path:
    """The study's Figure 6: misclassified test images captioned ``pred / true``."""
    return image_grid(images, captions, path, title)


def misclassified_figure(run_dir: str | Path, test_images: np.ndarray, label: str, shown: int = 64) -> Path:
    """misclassified.png from the run's misclassified.csv (most confident mistakes first) and its test images."""
    from ..fileio import read_csv

    rows = read_csv(Path(run_dir) / MISCLASSIFIED_CSV)[:shown]
    index = np.array([int(r["index"]) for r in rows], dtype=np.int64)
    return misclassified_grid(
        test_images[index],
        [f"{r['pred']} / {r['true']}" for r in rows],
        Path(run_dir) / MISCLASSIFIED_PNG,
        title=f"{label}: misclassified (pred / true)",
    )


# Past this many classes, per-class figures show a selection and say so: a 10,000-class figure takes gigabytes and
# minutes to draw and cannot be read anyway.
MAX_CLASSES_DRAWN = 40


def class_samples_grid(
    images: np.ndarray, labels: np.ndarray, classes: list[str], path: str | Path, per_class: int = 8, title: str = ""
) -> Path:
    """The study's Figures 2 and 3: the first ``per_class`` images of every class, one row per class (the first
    MAX_CLASSES_DRAWN classes of a larger set, said in the title)."""
    plt = _figure_module()
    if len(classes) > MAX_CLASSES_DRAWN:
        title = f"{title} (the first {MAX_CLASSES_DRAWN} of {len(classes)} classes)".strip()
        classes = classes[:MAX_CLASSES_DRAWN]
    k = len(classes)
    fig, axes = plt.subplots(k, per_class, figsize=(0.9 * per_class + 1.2, 0.9 * k + 0.4), squeeze=False)
    for row, name in enumerate(classes):
        picks = np.flatnonzero(labels == row)[:per_class]
        for col in range(per_class):
            ax = axes[row, col]
            ax.set_xticks([]), ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if col < len(picks):
                img = images[picks[col]]
                if img.shape[0] == 1:
                    ax.imshow(img[0], cmap="gray", vmin=0, vmax=255)
                else:
                    ax.imshow(np.transpose(img, (1, 2, 0)))
        axes[row, 0].set_ylabel(literal(name), rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(literal(title), fontsize=9)
    return save_figure(fig, path, dpi=90)


def training_curves(rows: list[dict], path: str | Path, title: str = "") -> Path:
    """Loss and accuracy against epoch, train and test (the study's Figures 4, 7, 9, 11)."""
    plt = _figure_module()
    epochs = [int(r["epoch"]) for r in rows]
    get = lambda key: [float(r[key]) for r in rows]  # noqa: E731
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax1.plot(epochs, get("train_loss"), "o-", label="train")
    ax1.plot(epochs, get("test_loss"), "s-", label="test")
    ax1.set_xlabel("epoch"), ax1.set_ylabel("loss"), ax1.legend(), ax1.grid(alpha=0.3)
    ax2.plot(epochs, get("train_acc"), "o-", label="train (augmented)")
    ax2.plot(epochs, get("test_top1"), "s-", label="test top-1")
    ax2.plot(epochs, get("test_top5"), "^--", label="test top-5", alpha=0.6)
    ax2.set_xlabel("epoch"), ax2.set_ylabel("accuracy"), ax2.legend(), ax2.grid(alpha=0.3)
    for ax in (ax1, ax2):
        _few_integer_ticks(ax, epochs)
    if title:
        fig.suptitle(literal(title), fontsize=10)
    return save_figure(fig, path, dpi=90)


def _few_integer_ticks(ax, epochs: list[int]) -> None:
    """Epoch ticks at whole numbers: each epoch where there are few (one epoch is one tick, not a crowd of
    fractions around it), else matplotlib's choice of whole numbers."""
    shown = sorted(set(epochs))
    if 0 < len(shown) <= 12:
        ax.set_xticks(shown)
        if len(shown) == 1:
            ax.set_xlim(shown[0] - 1, shown[0] + 1)
    else:
        ax.xaxis.get_major_locator().set_params(integer=True)


def most_confused(cm: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` classes involved in the most mistakes (as the true or the predicted class), in class order."""
    off = cm - np.diag(np.diag(cm))
    involvement = off.sum(0) + off.sum(1)
    return np.sort(np.argsort(-involvement, kind="stable")[:n])


def confusion_heatmaps(cm: np.ndarray, classes: list[str], path: str | Path, title: str = "") -> Path:
    """Counts and row-normalised rates side by side (the study's Figures 5, 8, 10, 12). With more than
    MAX_CLASSES_DRAWN classes, the rows and columns of the classes involved in the most mistakes, said in the
    title (the full matrix stays in confusion_matrix.csv)."""
    plt = _figure_module()
    rates_all = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    if len(classes) > MAX_CLASSES_DRAWN:
        keep = most_confused(cm, MAX_CLASSES_DRAWN)
        title = f"{title} ({MAX_CLASSES_DRAWN} most confused of {len(classes)} classes)".strip()
        cm, rates_all, classes = cm[np.ix_(keep, keep)], rates_all[np.ix_(keep, keep)], [classes[i] for i in keep]
    k = len(classes)
    size = max(4.0, 0.42 * k + 1.5)
    # constrained layout keeps the first panel's colour bar clear of the second panel's class names
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1.5, size), layout="constrained")
    rates = rates_all
    for ax, values, name, fmt in (
        (axes[0], cm, "counts", "d"),
        (axes[1], rates, "row-normalised (recall on the diagonal)", ".2f"),
    ):
        im = ax.imshow(values, cmap="Blues")
        ax.set_title(name, fontsize=9)
        ax.set_xticks(range(k), [literal(c) for c in classes], rotation=90, fontsize=7)
        ax.set_yticks(range(k), [literal(c) for c in classes], fontsize=7)
        ax.set_xlabel("predicted"), ax.set_ylabel("true")
        if k <= 20:
            threshold = values.max() / 2
            for i in range(k):
                for j in range(k):
                    ax.text(
                        j,
                        i,
                        format(values[i, j], fmt),
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if values[i, j] > threshold else "black",
                    )
        fig.colorbar(im, ax=ax, shrink=0.8)
    if title:
        fig.suptitle(literal(title), fontsize=10)
    return save_figure(fig, path, dpi=80)


def accuracy_overlays(series: list[dict], path: str | Path, title: str = "") -> Path:
    """Test top-1 of several runs against epoch and against cumulative training time.

    ``series``: dicts with ``label``, ``rows`` (metrics rows), ``color_key`` (runs sharing it share a colour) and,
    optionally, ``device``: where the runs trained on several machines, each machine gets its own marker on the time
    panel and a legend there, since minutes on one are not minutes on another.
    """
    plt = _figure_module()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
    keys = sorted({s["color_key"] for s in series})
    colors = {k: plt.get_cmap("tab10")(i % 10) for i, k in enumerate(keys)}
    devices = sorted({s.get("device", "") for s in series})
    markers = {d: "os^Dv<>p*h"[i % 10] for i, d in enumerate(devices)}
    labelled = set()
    for s in series:
        epochs = [int(r["epoch"]) for r in s["rows"]]
        acc = [float(r["test_top1"]) for r in s["rows"]]
        minutes = np.cumsum([float(r["epoch_time_s"]) for r in s["rows"]]) / 60
        label = s["color_key"] if s["color_key"] not in labelled else None
        labelled.add(s["color_key"])
        ax1.plot(epochs, acc, "o-", color=colors[s["color_key"]], label=literal(label), alpha=0.85)
        marker = markers[s.get("device", "")]
        ax2.plot(minutes, acc, marker=marker, ls="-", color=colors[s["color_key"]], alpha=0.85)
    ax1.set_xlabel("epoch"), ax1.set_ylabel("test top-1"), ax1.grid(alpha=0.3), ax1.legend(fontsize=8)
    _few_integer_ticks(ax1, [int(r["epoch"]) for s in series for r in s["rows"]])
    ax2.set_xlabel("training time (minutes)"), ax2.set_ylabel("test top-1"), ax2.grid(alpha=0.3)
    if len(devices) > 1:
        for d in devices:
            ax2.plot([], [], marker=markers[d], ls="", color="0.3", label=literal(d))
        ax2.legend(fontsize=7, title="trained on (times not comparable)", title_fontsize=7)
    if title:
        fig.suptitle(literal(title), fontsize=10)
    return save_figure(fig, path)


def robustness_heatmap(
    grid: np.ndarray, names: list[str], severities: list[int], clean: float, path: str | Path, title: str = ""
) -> Path:
    """Top-1 per corruption (rows) and severity (columns), annotated, beside the clean accuracy."""
    plt = _figure_module()
    fig, ax = plt.subplots(figsize=(1.1 * len(severities) + 3, 0.32 * len(names) + 1.4))
    im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(severities)), [str(s) for s in severities])
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel(f"severity (clean top-1 {clean:.1%})")
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            if not np.isnan(grid[i, j]):
                ax.text(
                    j,
                    i,
                    f"{grid[i, j]:.0%}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if grid[i, j] < 0.6 else "black",
                )
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if title:
        ax.set_title(literal(title), fontsize=9)
    return save_figure(fig, path)


def curves_by_panel(
    panels: dict[str, dict[str, tuple[list, list]]],
    clean: dict[str, float] | None,
    xlabel: str,
    path: str | Path,
    title: str = "",
    x_labels: Callable[[float], str] | None = None,
) -> Path:
    """One panel per key of ``panels``, one line per model: {panel: {label: (x, top1)}}; clean accuracy dashed.
    ``x_labels``: how to write the x values at their ticks (eps as 8/255, say)."""
    plt = _figure_module()
    n = len(panels)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False)
    labels = sorted({label for per in panels.values() for label in per})
    colors = {label: plt.get_cmap("tab10")(i % 10) for i, label in enumerate(labels)}
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, (panel, per) in zip(axes.flat, panels.items()):
        for label, (x, y) in per.items():  # two points (clean and one eps) are marks, not a curve
            ax.plot(x, y, "o-" if len(x) > 2 else "o", color=colors[label], label=literal(label))
            if clean and label in clean:
                ax.axhline(clean[label], color=colors[label], ls="--", lw=0.8)
        ax.set_title(panel, fontsize=9), ax.set_xlabel(xlabel, fontsize=8), ax.set_ylabel("top-1", fontsize=8)
        ax.set_ylim(0, 1), ax.grid(alpha=0.3)
        if x_labels is not None:
            ticks = sorted({v for x, _ in per.values() for v in x})
            ax.set_xticks(ticks, [x_labels(v) if v else "0" for v in ticks], fontsize=7, rotation=45)
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    if title:
        fig.suptitle(literal(title), fontsize=10, y=1.02)
    return save_figure(fig, path)
