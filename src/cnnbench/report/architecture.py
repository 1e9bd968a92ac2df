"""The report's architecture section: per data set, where each model's parameters, MACs and activation memory
sit, stage by stage (analysis.architecture counts them on the meta device from the model's own definition)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..analysis.architecture import model_layer_table, stage_totals, where_computation_goes
from .plots import _figure_module, literal, save_figure

PANELS = (
    ("params", "parameters (millions)", 1e6),
    ("macs", "MACs per image (millions)", 1e6),
    ("activation_bytes", "activation memory per image (MiB, float32)", 2**20),
)


def architecture_rows(groups, input_shape: tuple[int, int, int], num_classes: int) -> list[dict]:
    """One entry per (model, variant, width) of the data set: its stages and the sentence about them."""
    rows = []
    shapes = {(g.model, g.variant, g.width): g.scaled for g in groups}
    for (model, variant, width), scaled in shapes.items():
        _, layers = model_layer_table(model, variant, input_shape, num_classes, width)
        stages = stage_totals(layers)
        rows.append(
            {
                "label": f"{model} ({variant}{scaled})",
                "stages": stages,
                "sentence": where_computation_goes(model, stages),
            }
        )
    return rows


def stage_figure(rows: list[dict], path: str | Path, title: str) -> Path:
    """Three panels (parameters, MACs, activation memory); in each, every model's stages as bars side by side,
    the n-th stage of each model at the n-th position, labelled with the stage's name."""
    plt = _figure_module()
    # one panel above the other at about the page's width, so that the stage names print at a readable size
    fig, axes = plt.subplots(len(PANELS), 1, figsize=(8, 2.9 * len(PANELS)))
    width = 0.8 / max(len(rows), 1)
    for ax, (key, label, scale) in zip(axes, PANELS):
        for i, row in enumerate(rows):
            x = np.arange(len(row["stages"])) + (i - (len(rows) - 1) / 2) * width
            values = [s[key] / scale for s in row["stages"]]
            bars = ax.bar(x, values, width, label=literal(row["label"]))
            for bar, stage in zip(bars, row["stages"]):
                ax.annotate(
                    stage["stage"],
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=8,
                    rotation=90,
                    xytext=(0, 2),
                    textcoords="offset points",
                )
        ax.set_xticks(range(max(len(r["stages"]) for r in rows)))
        ax.set_xticklabels([f"stage {k + 1}" for k in range(max(len(r["stages"]) for r in rows))], fontsize=9)
        ax.set_ylabel(label, fontsize=9)
        ax.margins(y=0.25)
    axes[0].legend(fontsize=8)
    fig.suptitle(literal(title))
    fig.tight_layout()
    return save_figure(fig, path)
