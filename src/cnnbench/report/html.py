"""The study report: one self-contained HTML file (figures embedded), rebuilt from run folders alone."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from pathlib import Path

import numpy as np

from ..analysis.protocol import Protocol
from ..fileio import read_csv, read_json, write_text
from ..layout import CONFUSION_CSV, REPORT_HTML, STUDY_SPEC, dataset_dir_for
from ..models.registry import variant_description
from . import plots
from .architecture import architecture_rows, stage_figure
from .comparison import PAIRS_LEGEND, findings, pair_cells, write_comparison
from .insight import landscape_overlay, run_insight_figures, study_cka_figures
from .plots import MAX_CLASSES_DRAWN
from .robustness import attach_corruption_errors, choose_baseline, dataset_figures, robustness_rows, run_heatmap
from .significance import all_pairs
from .tables import (
    TOP1_LEGEND,
    group_runs,
    has_validation,
    load_runs,
    megabytes,
    millions,
    minutes,
    pct,
    rate,
    study_reference,
    top1_cell,
)


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _run_figures(run) -> dict:
    """Curves and confusion heatmaps drawn from the run folder's files (misclassified.png is already there)."""
    s = run.summary
    label = f"{s['model']} ({s['variant']}) on {s['dataset']}, seed {s['seed']}"
    curves = plots.training_curves(run.rows, run.path / "curves.png", title=label)
    figures = {"curves": _data_uri(curves)}
    if (run.path / CONFUSION_CSV).exists():
        table = read_csv(run.path / CONFUSION_CSV)
        classes = [r["true"] for r in table]
        cm = np.array([[int(r[c]) for c in classes] for r in table])
        figures["confusion"] = _data_uri(plots.confusion_heatmaps(cm, classes, run.path / "confusion.png", title=label))
    if (run.path / "misclassified.png").exists():
        figures["misclassified"] = _data_uri(run.path / "misclassified.png")
    return figures


def _insight_section(study_dir: Path, groups, ds_dir: Path, dataset: str) -> dict:
    """Per run: dynamics, filters, feature maps, Grad-CAM, CKA and landscape; per data set: cross-model CKA and
    the landscapes side by side."""
    from ..layout import safe_name

    runs = []
    for g in groups:
        for r in g.runs:
            label = f"{g.model} s{r.summary['seed']}"
            found = run_insight_figures(r.path, label)
            runs.append({**found, "label": label, "figures": {k: _data_uri(v) for k, v in found["figures"].items()}})
    overlay = landscape_overlay(
        [r for g in groups for r in g.runs], ds_dir / "landscape.png", f"{dataset}: loss landscape"
    )
    return {
        "runs": runs,
        "cross_cka": [_data_uri(p) for p in study_cka_figures(study_dir, safe_name(dataset))],
        "landscape": _data_uri(overlay) if overlay else None,
        "has_dynamics": any("dynamics" in r["figures"] for r in runs),
        "has_learned": any("cka" in r["figures"] for r in runs),
    }


def _architecture_section(groups, info: dict, ds_dir: Path, dataset: str) -> dict | None:
    """Stage-by-stage parameters, MACs and activation memory of the data set's models (None without dataset.json,
    which gives the input shape)."""
    if not info:
        return None
    rows = architecture_rows(groups, tuple(info["input_shape"]), len(info["classes"]))
    figure = stage_figure(rows, ds_dir / "architecture.png", f"{dataset}: where parameters, computation and memory sit")
    return {"rows": rows, "figure": _data_uri(figure)}


def shown_classes(per_class: list[dict], limit: int = MAX_CLASSES_DRAWN) -> list[dict]:
    """The per-class table as the page shows it: every class, or past ``limit`` the ones with the lowest F1 (the
    whole table stays in per_class.csv)."""
    if len(per_class) <= limit:
        return per_class
    return sorted(per_class, key=lambda c: float(c.get("f1") or 0))[:limit]


def build_report(study_dir: str | Path, baseline: str | None = None) -> Path:
    """Write comparison.csv, comparison.md, figures and report.html into ``study_dir``; return the report's path.
    ``baseline``: the model corruption errors (mCE) are relative to; default the study's first model."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    study_dir = Path(study_dir)
    records = load_runs(study_dir)
    if not records:
        from ..errors import ConfigError

        raise ConfigError(
            f"{study_dir} holds no finished runs (no runs/*/summary.json): run `cnnbench compare --out "
            f"{study_dir}` first."
        )
    groups = group_runs(records)
    study = read_json(study_dir / STUDY_SPEC) if (study_dir / STUDY_SPEC).exists() else {}
    baseline = choose_baseline(groups, baseline, study.get("models", []))
    attach_corruption_errors(groups, baseline)
    protocol = Protocol.from_dict(study["protocol"]) if isinstance(study.get("protocol"), dict) else None
    pairs = all_pairs(groups, protocol)
    write_comparison(study_dir, groups, pairs)
    notes = findings(groups, pairs, protocol)
    sections = []
    for dataset in sorted({g.dataset for g in groups}):
        gs = [g for g in groups if g.dataset == dataset]
        ds_dir = dataset_dir_for(study_dir, dataset)
        info = read_json(ds_dir / "dataset.json") if (ds_dir / "dataset.json").exists() else {}
        series = [
            {
                "label": f"{g.label} s{r.summary['seed']}",
                "rows": r.rows,
                "color_key": f"{g.model} ({g.variant}{g.start})",
            }
            for g in gs
            for r in g.runs
        ]
        overlay = plots.accuracy_overlays(series, ds_dir / "accuracy.png", title=f"{dataset}: test top-1")
        runs = []
        for g in gs:
            for r in g.runs:
                figures = _run_figures(r)
                heatmap = run_heatmap(r, r.path / "robustness.png")
                if heatmap:
                    figures["robustness"] = _data_uri(heatmap)
                runs.append(
                    {
                        "summary": r.summary,
                        "per_class": shown_classes(r.per_class),
                        "classes_total": len(r.per_class),
                        "figures": figures,
                        "robustness": r.robustness,
                        "config": json.dumps(r.summary["config"], indent=2),
                        "environment": json.dumps(r.summary.get("environment", {}), indent=2),
                        "name": r.path.name,
                    }
                )
        insight = _insight_section(study_dir, gs, ds_dir, dataset)
        architecture = _architecture_section(gs, info, ds_dir, dataset)
        sections.append(
            {
                "insight": insight,
                "architecture": architecture,
                "name": dataset,
                "info": info,
                "source": gs[0].first["data_source"],
                "samples": _data_uri(ds_dir / "samples.png") if (ds_dir / "samples.png").exists() else None,
                "overlay": _data_uri(overlay),
                "rows": [g.row() for g in gs],
                "findings": notes[dataset],
                "pairs": [pair_cells(p) for p in pairs if p.dataset == dataset],
                "has_val": has_validation(gs),
                "reference": study_reference(dataset),
                "runs": runs,
                "robustness": robustness_rows(gs),
                "robustness_figures": {k: _data_uri(v) for k, v in dataset_figures(gs, ds_dir, dataset).items()},
                "robustness_source": next((g.robustness for g in gs if g.robustness), None),
                "baseline": baseline,
            }
        )
    env = Environment(loader=PackageLoader("cnnbench.report", "templates"), autoescape=select_autoescape(["html"]))
    env.filters.update(minutes=minutes, millions=millions, rate=rate, megabytes=megabytes)
    env.globals.update(variant_description=variant_description)
    env.globals.update(pct=pct, top1_cell=top1_cell, TOP1_LEGEND=TOP1_LEGEND, PAIRS_LEGEND=PAIRS_LEGEND)
    page = env.get_template("report.html").render(  # the template, named as the page it makes
        title=f"cnnbench study: {study_dir.name}",
        study=study,
        sections=sections,  # the template escapes the title
        generated=datetime.now().strftime("%Y-%m-%d %H:%M"),
        run_count=len(records),
    )
    return write_text(study_dir / REPORT_HTML, page)
