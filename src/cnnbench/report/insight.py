"""The report's "How the weights update" and "What the networks learn": figures and tables drawn from the files
that training (--dynamics) and `cnnbench insight` left in each run folder."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from ..fileio import read_csv, read_json
from ..layout import (
    DEAD_UNITS_CSV,
    DYNAMICS_CSV,
    FILTERS_NPZ,
    INSIGHT_DIR,
    INSIGHT_JSON,
    STUDY_INSIGHT_DIR,
)
from . import insight_plots
from .run_records import stale_measurement

# CS231n's rule of thumb: an update about 1e-3 of the weight is healthy; far outside this band a layer learns too
# slowly (frozen) or too fast (unstable).
HEALTHY_UPDATE_RATIO = (1e-4, 1e-2)


def layer_series(run_path: Path) -> dict[str, dict]:
    """{layer: {"stage", "step", "update_ratio", "grad_norm"}} from dynamics.csv, layers in depth order."""
    series: dict[str, dict] = {}
    for r in read_csv(run_path / DYNAMICS_CSV):
        s = series.setdefault(r["layer"], {"stage": r["stage"], "step": [], "update_ratio": [], "grad_norm": []})
        s["step"].append(int(r["global_step"]))
        s["update_ratio"].append(float(r["update_ratio"]))
        s["grad_norm"].append(float(r["grad_norm"]))
    return series


def flagged_layers(series: dict[str, dict], band: tuple[float, float] = HEALTHY_UPDATE_RATIO) -> list[dict]:
    """Layers whose median update ratio lies outside ``band``, with the share of recorded steps outside it."""
    flagged = []
    for layer, s in series.items():
        ratios = np.array(s["update_ratio"])
        median = float(np.median(ratios))
        if not band[0] <= median <= band[1]:
            outside = float(np.mean((ratios < band[0]) | (ratios > band[1])))
            flagged.append(
                {
                    "layer": layer,
                    "stage": s["stage"],
                    "median": median,
                    "outside": outside,
                    "verdict": "too slow (frozen?)" if median < band[0] else "too fast (unstable?)",
                }
            )
    return flagged


def layer_table(series: dict[str, dict]) -> list[dict]:
    """Per stage: median update ratio in the first and last recorded epoch-thirds, and median gradient norm."""
    by_stage: dict[str, list] = defaultdict(list)
    for s in series.values():
        by_stage[s["stage"]].append(s)
    rows = []
    for stage, layers in by_stage.items():
        ratios = np.array([layer["update_ratio"] for layer in layers])  # layers x records
        third = max(1, ratios.shape[1] // 3)
        rows.append(
            {
                "stage": stage,
                "layers": len(layers),
                "early": float(np.median(ratios[:, :third])),
                "late": float(np.median(ratios[:, -third:])),
                "grad_norm": float(np.median([layer["grad_norm"] for layer in layers])),
            }
        )
    return rows


def _dead_series(run_path: Path) -> dict[str, tuple[list, list]]:
    dead: dict[str, tuple[list, list]] = {}
    if (run_path / DEAD_UNITS_CSV).exists():
        for r in read_csv(run_path / DEAD_UNITS_CSV):
            epochs, fractions = dead.setdefault(r["stage"], ([], []))
            epochs.append(int(r["epoch"]))
            fractions.append(float(r["dead_fraction"]))
    return dead


def _snapshots(run_path: Path, rows: int = 5) -> dict[int, np.ndarray]:
    with np.load(run_path / FILTERS_NPZ) as z:
        all_epochs = {int(k.split("_")[1]): z[k] for k in z.files}
    epochs = sorted(all_epochs)
    keep = sorted({epochs[round(i)] for i in np.linspace(0, len(epochs) - 1, min(rows, len(epochs)))})
    return {e: all_epochs[e] for e in keep}


def _cka_csv(path: Path) -> tuple[np.ndarray, list[str], list[str]]:
    table = read_csv(path)
    cols = [c for c in table[0] if c != "stage"]
    return np.array([[float(r[c]) for c in cols] for r in table]), [r["stage"] for r in table], cols


def landscape_curves(run_path: Path) -> dict[str, tuple[list, list]]:
    """{slice: (x, loss)} of the 1-D slices in insight/landscape.csv."""
    curves: dict[str, tuple[list, list]] = {}
    path = run_path / INSIGHT_DIR / "landscape.csv"
    for r in read_csv(path) if path.exists() else []:
        if r["slice"] != "plane":
            x, loss = curves.setdefault(r["slice"], ([], []))
            x.append(float(r["x"]))
            loss.append(float(r["loss"]))
    return curves


def landscape_plane(run_path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The 2-D slice of insight/landscape.csv (`cnnbench insight --landscape 2d`) as x, y and loss grids."""
    path = run_path / INSIGHT_DIR / "landscape.csv"
    rows = [r for r in read_csv(path) if r["slice"] == "plane"] if path.exists() else []
    side = int(round(len(rows) ** 0.5))
    if not rows or side * side != len(rows):
        return None
    grid = np.array([[float(r["x"]), float(r["y"]), float(r["loss"])] for r in rows]).reshape(side, side, 3)
    return grid[..., 0], grid[..., 1], grid[..., 2]  # written row by row: y outer, x inner


def run_insight_figures(run_path: Path, label: str, rows: list[dict]) -> dict:
    """Figures (paths) and tables for one run; keys absent where the run lacks the files. ``rows``: the run's
    metrics.csv rows as the report read them (which epoch it trained to: an older insight.json is left out)."""
    out = run_path / INSIGHT_DIR
    result: dict = {"notes": [], "figures": {}}
    if (run_path / DYNAMICS_CSV).exists():
        series = layer_series(run_path)
        result["figures"]["dynamics"] = insight_plots.dynamics_figure(
            series,
            _dead_series(run_path),
            HEALTHY_UPDATE_RATIO,
            out / "dynamics.png",
            title=f"{label}: how the weights update",
        )
        result["flagged"] = flagged_layers(series)
        result["stages"] = layer_table(series)
    else:
        result["notes"].append("no dynamics.csv: trained without --dynamics (retrain with it for update curves)")
    if (run_path / FILTERS_NPZ).exists():
        result["figures"]["filters"] = insight_plots.filters_figure(
            _snapshots(run_path), out / "filters.png", title=f"{label}: first-layer filters by epoch"
        )
    if not (run_path / INSIGHT_JSON).exists():
        result["notes"].append(
            f"no {INSIGHT_JSON}: run `cnnbench insight {run_path}` for feature maps, Grad-CAM, "
            "CKA and the loss landscape"
        )
        return result
    info = read_json(run_path / INSIGHT_JSON)
    stale = stale_measurement(info, rows)
    if stale:
        result["notes"].append(f"{INSIGHT_JSON} left out: it was {stale}; run `cnnbench insight {run_path}` again")
        return result
    result["info"] = info
    result["init_cosine"] = init_cosine_by_stage(info.get("weights_vs_init", []))
    with np.load(out / "feature_maps.npz") as z:
        maps = {k: z[k] for k in z.files if k != "images"}
        result["figures"]["feature_maps"] = insight_plots.feature_maps_figure(
            z["images"],
            {s: maps[s] for s in info["stages"] if s in maps},
            out / "feature_maps.png",
            title=f"{label}: each stage's 8 most active channels",
        )
    with np.load(out / "gradcam.npz") as z:
        classes = list(z["classes"])
        panels = {
            k: (
                z[f"{k}_images"],
                z[f"{k}_cams"],
                [f"{classes[p]} / {classes[t]}" for p, t in zip(z[f"{k}_pred"], z[f"{k}_true"])],
            )
            for k in ("correct", "wrong")
            if f"{k}_images" in z.files
        }
    if panels:
        result["figures"]["gradcam"] = insight_plots.gradcam_figure(
            panels, out / "gradcam.png", title=f"{label}: Grad-CAM at {info['gradcam_layer']} (pred / true)"
        )
    matrix, rows, cols = _cka_csv(out / "cka.csv")
    result["figures"]["cka"] = insight_plots.cka_figure(
        matrix, rows, cols, out / "cka.png", title=f"{label}: linear CKA between stages"
    )
    curves = landscape_curves(run_path)
    if curves:
        result["figures"]["landscape"] = insight_plots.landscape_figure(
            {k: {label: v} for k, v in curves.items()}, out / "landscape.png", title=f"{label}: loss landscape"
        )
        result["landscape"] = landscape_numbers(curves)
    plane = landscape_plane(run_path)
    if plane is not None:
        result["figures"]["landscape_plane"] = insight_plots.landscape_plane_figure(
            *plane, out / "landscape_plane.png", title=f"{label}: loss over two random directions"
        )
    return result


def init_cosine_by_stage(rows: list[dict]) -> dict[str, float]:
    """Median cosine between trained and initial weights per stage (insight.json's weights_vs_init)."""
    by_stage: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        by_stage[r["stage"]].append(r["cosine"])
    return {stage: float(np.median(v)) for stage, v in by_stage.items()}


def landscape_numbers(curves: dict[str, tuple[list, list]]) -> dict:
    """The loss at the trained weights and its rise half-way and all the way along the random direction (both
    sides averaged): a sharper minimum rises faster."""
    out = {}
    if "direction" in curves:
        x, loss = map(np.array, curves["direction"])
        at = lambda a: float(np.mean([np.interp(a, x, loss), np.interp(-a, x, loss)]))  # noqa: E731
        out.update(loss_at_minimum=float(np.interp(0.0, x, loss)), loss_at_half=at(0.5), loss_at_one=at(1.0))
    if "init_to_final" in curves:
        t, loss = map(np.array, curves["init_to_final"])
        inside = (t >= 0) & (t <= 1)
        diffs = np.diff(loss[inside])
        out["line_monotone"] = bool(np.all(diffs <= 1e-6))
    return out


def study_cka_figures(study_dir: Path, dataset_key: str) -> list[Path]:
    """Cross-model CKA heat maps for one data set (from insight/cka-<dataset>-seed*-a-vs-b.csv)."""
    folder = study_dir / STUDY_INSIGHT_DIR
    figures = []
    for path in sorted(folder.glob(f"cka-{dataset_key}-seed*-*-vs-*.csv")) if folder.exists() else []:
        matrix, rows, cols = _cka_csv(path)
        a, b = path.stem.split("-seed", 1)[1].split("-", 1)[1].split("-vs-")
        figures.append(
            insight_plots.cka_figure(
                matrix,
                rows,
                cols,
                path.with_suffix(".png"),
                xlabel=b,
                ylabel=a,
                title=f"{path.stem.split('-', 1)[1]}: linear CKA between stages",
            )
        )
    return figures


def landscape_overlay(runs: list, path: Path, title: str) -> Path | None:
    """Every run's 1-D slices of one data set in one figure (models side by side)."""
    per_slice: dict[str, dict] = {}
    for r in runs:
        for name, curve in landscape_curves(r.path).items():
            per_slice.setdefault(name, {})[f"{r.summary['model']} s{r.summary['seed']}"] = curve
    return insight_plots.landscape_figure(per_slice, path, title) if per_slice else None
