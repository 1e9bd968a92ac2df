"""The study report: one self-contained HTML file (figures embedded), rebuilt from run folders alone."""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from ..analysis.protocol import Protocol, checked
from ..engine.run_folder import started_at
from ..errors import CnnbenchError
from ..fileio import read_csv, read_json, write_text
from ..layout import (
    ACCURACY_PNG,
    CONFIG_JSON,
    CONFUSION_CSV,
    CONFUSION_PNG,
    CURVES_PNG,
    DATASET_JSON,
    FINDINGS_MD,
    MISCLASSIFIED_PNG,
    REPORT_HTML,
    ROBUSTNESS_PNG,
    RUN_FIGURES_DIR,
    RUNS_DIR,
    SAMPLES_PNG,
    STUDY_SPEC,
    SUMMARY,
    dataset_dir_for,
    run_dirs_of,
    safe_name,
    trial_dirs_of,
)
from . import plots
from .architecture import architecture_rows, stage_figure
from .comparison import PAIRS_LEGEND, STATUS_LEGEND, findings, pair_cells, write_comparison
from .formatting import TOP1_LEGEND, eps_label, megabytes, millions, minutes, pct, rate, top1_cell
from .insight import landscape_overlay, run_insight_figures, study_cka_figures
from .plots import MAX_CLASSES_DRAWN
from .reference import study_reference
from .robustness import (
    attach_corruption_errors,
    choose_baseline,
    dataset_figures,
    robustness_rows,
    run_heatmap,
    transfer_rows,
)
from .run_records import device_of, load_run_dirs, load_runs
from .significance import all_pairs
from .tables import group_runs, has_validation
from .tuning import tuning_section

SMALL_FIGURE_BYTES = 20_000  # below this a figure goes in as it is


def _data_uri(path: Path) -> str:
    """A figure embedded in the page, as a 256-colour PNG where that is smaller: a report of ten runs with their
    image grids and confusion matrices then weighs a third of what full-colour figures weigh, and a chart or a grid
    of 32 px images looks the same. The full-colour PNG stays on disk beside it."""
    data = path.read_bytes()
    if len(data) > SMALL_FIGURE_BYTES:
        import io

        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            buf = io.BytesIO()
            image.convert("RGB").quantize(256).save(buf, format="PNG", optimize=True)
        if buf.tell() < len(data):
            data = buf.getvalue()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def inline_code(text: str):
    """Text written for a terminal (commands in `backticks`) as HTML: escaped, the backticked parts as <code>."""
    import re

    from markupsafe import Markup, escape

    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))


def findings_markdown(notes: dict[str, list[str]]) -> str:
    """The findings per data set, as a list a terminal prints (and a person reads in findings.md)."""
    lines = []
    for dataset, said in notes.items():
        lines += [f"{dataset}:"] + [f"- {n}" for n in said] + [""]
    return "\n".join(lines)


def subset_note(groups) -> str:
    """Where runs trained or tested on part of their data set (--limit-train, --limit-test), how much: a number
    beside a published table on the full set is otherwise read as like for like."""
    limited = [
        r
        for g in groups
        for r in g.runs
        if r.summary.get("config", {}).get("limit_train") or r.summary.get("config", {}).get("limit_test")
    ]
    if not limited:
        return ""
    sizes = sorted({(int(r.summary["train_images"]), int(r.summary["test_images"])) for r in limited})
    said = "; ".join(f"{train:,} training and {test:,} test images" for train, test in sizes)
    return (
        f"{len(limited)} of {sum(len(g.runs) for g in groups)} runs used a subset of it (--limit-train, "
        f"--limit-test): {said}. Numbers from a subset are not those of the full data set."
    )


def _run_figures(run, title: str) -> dict:
    """Curves and confusion heatmaps drawn from the run folder's files (misclassified.png is already there)."""
    curves = plots.training_curves(run.rows, run.path / CURVES_PNG, title=title)
    figures = {"curves": _data_uri(curves)}
    if (run.path / CONFUSION_CSV).exists():
        table = read_csv(run.path / CONFUSION_CSV)
        classes = [r["true"] for r in table]
        cm = np.array([[int(r[c]) for c in classes] for r in table])
        figures["confusion"] = _data_uri(plots.confusion_heatmaps(cm, classes, run.path / CONFUSION_PNG, title=title))
    if (run.path / MISCLASSIFIED_PNG).exists():
        figures["misclassified"] = _data_uri(run.path / MISCLASSIFIED_PNG)
    return figures


def _insight_section(study_dir: Path, groups, ds_dir: Path, dataset: str) -> dict:
    """Per run: dynamics, filters, feature maps, Grad-CAM, CKA and landscape; per data set: cross-model CKA and
    the landscapes side by side."""
    runs = []
    for g in groups:
        for r in g.runs:
            label = f"{g.model} s{r.summary['seed']}"
            found = run_insight_figures(r.path, label, r.rows)
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


def build_report(target: str | Path, baseline: str | None = None) -> Path:
    """Write report.html (and, for a study, comparison.csv, comparison.md and pairs.csv) into ``target``: a study
    folder, or one run's folder (`cnnbench train --out`), which gets the same sections for its single run. Returns
    the report's path. ``baseline``: the model corruption errors (mCE) are relative to; default the first model."""
    target = Path(target)
    if (target / SUMMARY).exists() and not (target / RUNS_DIR).is_dir():
        return _run_report(target)
    if (target / CONFIG_JSON).exists() and not (target / RUNS_DIR).is_dir():
        from ..errors import ConfigError

        raise ConfigError(
            f"{target} is a run that has not finished (it has no {SUMMARY} yet), so there is nothing to report: "
            f"finish it with `cnnbench train --out {target} --resume`, then run `cnnbench report {target}` again."
        )
    return _study_report(target, baseline)


def _run_report(run_dir: Path) -> Path:
    records = load_run_dirs([run_dir], warn=_refuse)
    return _write_report(
        run_dir, records, {}, f"cnnbench run: {run_dir.name}", None, lambda _: run_dir / RUN_FIGURES_DIR, True
    )


def _refuse(problem: str) -> None:
    from ..errors import ConfigError

    raise ConfigError(f"Cannot build the report: {problem}")


def _the_study_settings_only(records: list, study: dict) -> list:
    """The runs trained with the settings study.json gives their cells. A run folder another command on the same
    folder trained with other settings is left out, and said, so a comparison never mixes recipes."""
    from ..config import config_differences, config_from_dict, saved_config_values

    cells = {c.get("name"): c.get("config") for c in study.get("cells", []) if isinstance(c, dict)}
    kept = []
    for r in records:
        asked = cells.get(r.path.name)
        try:
            # both read as saved configs: a cell recorded before an option existed asked for what runs then did
            wanted = config_from_dict(saved_config_values(asked)) if isinstance(asked, dict) else None
            changes = config_differences(r.summary.get("config", {}), wanted) if wanted else ""
        except CnnbenchError:
            changes = ""  # a cell this version cannot read: the run stays, as in a study without cells
        if changes:
            print(
                f"warning: left {r.path.name} out of the report: it was trained with other settings than the study "
                f"asks for ({changes}), by another command on this folder; rerun the study's command to retrain "
                "it, or move it out",
                file=sys.stderr,
            )
            continue
        kept.append(r)
    return kept


def _study_report(study_dir: Path, baseline: str | None) -> Path:
    records = load_runs(study_dir)
    if not records:
        from ..errors import ConfigError

        raise ConfigError(
            f"{study_dir} holds no finished runs (no runs/*/summary.json): run `cnnbench compare --out "
            f"{study_dir}` first, or give a run folder (of `cnnbench train`)."
        )
    study = read_json(study_dir / STUDY_SPEC) if (study_dir / STUDY_SPEC).exists() else {}
    records = _the_study_settings_only(records, study)
    return _write_report(
        study_dir,
        records,
        study,
        f"cnnbench study: {study_dir.name}",
        baseline,
        lambda dataset: dataset_dir_for(study_dir, dataset),
        False,
    )


def study_protocol_as_shown(study_dir: Path, study: dict, records: list) -> Protocol | None:
    """The study's declared protocol, checked against its run folders (and its tuning trials): any run that began
    before the declaration makes it a protocol written after results, whatever its own fields say."""
    if "protocol" not in study:
        return None
    declared = Protocol.from_dict(study["protocol"], where=str(Path(study_dir) / STUDY_SPEC))
    runs = [r.path for r in records] + [d for t in trial_dirs_of(study_dir) for d in run_dirs_of(t)]
    return checked(declared, {_relative(run, study_dir): started_at(run) for run in runs})


def _relative(path: Path, folder: Path) -> str:
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:
        return path.name


@dataclass(frozen=True)
class ReportContext:
    """What every data set's section is drawn from: the study folder, its study.json, its pairs and findings."""

    out: Path
    study: dict
    pairs: list
    notes: dict[str, list[str]]
    baseline: str | None
    figures_dir: Callable[[str], Path]
    single_run: bool


def _write_report(
    out: Path,
    records: list,
    study: dict,
    title: str,
    baseline: str | None,
    figures_dir: Callable[[str], Path],
    single_run: bool,
) -> Path:
    """The report's sections, drawn from ``records`` alone, into ``out``/report.html; a study also gets its tables."""
    groups = group_runs(records)
    baseline = choose_baseline(groups, baseline if not single_run else None, study.get("models", []))
    attach_corruption_errors(groups, baseline)
    protocol = study_protocol_as_shown(out, study, records)
    pairs = all_pairs(groups, protocol)
    if not single_run:
        write_comparison(out, groups, pairs)
    notes = findings(groups, pairs, protocol)
    if not single_run:
        write_text(out / FINDINGS_MD, findings_markdown(notes))
    context = ReportContext(out, study, pairs, notes, baseline, figures_dir, single_run)
    sections = [
        _dataset_section(context, dataset, [g for g in groups if g.dataset == dataset])
        for dataset in sorted({g.dataset for g in groups})
    ]
    return write_text(out / REPORT_HTML, _render(title, study, single_run, out, sections, len(records)))


def _dataset_section(context: ReportContext, dataset: str, gs: list) -> dict:
    """One data set's part of the page: its tables, pairs, tuning, architecture, robustness, insight and runs."""
    out, ds_dir = context.out, context.figures_dir(dataset)
    info = read_json(ds_dir / DATASET_JSON) if (ds_dir / DATASET_JSON).exists() else {}
    devices = sorted(set().union(*(g.device_names for g in gs)))
    return {
        "anchor": "data-" + safe_name(dataset),
        "subset": subset_note(gs),
        "mixed_devices": "; ".join(devices) if len(devices) > 1 else "",
        "insight": _insight_section(out, gs, ds_dir, dataset),
        "tuning": None if context.single_run else tuning_section(out, context.study, dataset, _data_uri),
        "architecture": _architecture_section(gs, info, ds_dir, dataset),
        "name": dataset,
        "info": info,
        "source": gs[0].first["data_source"],
        "samples": _data_uri(ds_dir / SAMPLES_PNG) if (ds_dir / SAMPLES_PNG).exists() else None,
        "overlay": _data_uri(_overlay(gs, ds_dir, dataset)),
        "rows": [g.row() for g in gs],
        "stale_robustness": [f"{r.path.name}: {r.robustness_stale}" for g in gs for r in g.runs if r.robustness_stale],
        "findings": context.notes[dataset],
        "pairs": [pair_cells(p) for p in context.pairs if p.dataset == dataset],
        "has_val": has_validation(gs),
        "reference": study_reference(dataset),
        "runs": [_run_section(g, r) for g in gs for r in g.runs],
        "robustness": robustness_rows(gs),
        "robustness_figures": {k: _data_uri(v) for k, v in dataset_figures(gs, ds_dir, dataset).items()},
        "robustness_source": next((g.robustness for g in gs if g.robustness), None),
        "transfer": [] if context.single_run else transfer_rows(out, dataset),
        "attack_settings": next(
            (r.robustness.get("attack_settings", {}) for g in gs for r in g.runs if r.robustness), {}
        ),
        "baseline": context.baseline,
    }


def _overlay(gs: list, ds_dir: Path, dataset: str) -> Path:
    """Test top-1 of every run against epoch and time, each curve's device marked where they differ."""
    series = [
        {
            "label": f"{g.label} s{r.summary['seed']}",
            "rows": r.rows,
            "color_key": f"{g.model} ({g.qualifier})",
            "device": device_of(r),
        }
        for g in gs
        for r in g.runs
    ]
    return plots.accuracy_overlays(series, ds_dir / ACCURACY_PNG, title=f"{dataset}: test top-1")


def _run_section(g, r) -> dict:
    """One run's folded section: its figures, per-class table, configuration and environment."""
    label = f"{g.model} ({g.qualifier})"  # model, variant, width and start, as the run's heading says
    run_title = f"{label} on {r.summary['dataset']}, seed {r.summary['seed']}"
    figures = _run_figures(r, run_title)
    heatmap = run_heatmap(r, r.path / ROBUSTNESS_PNG, run_title)
    if heatmap:
        figures["robustness"] = _data_uri(heatmap)
    epochs = int(r.summary.get("epochs", len(r.rows)))
    return {
        "summary": r.summary,
        "epochs_text": f"{epochs} epoch{'s' if epochs != 1 else ''}",
        "label": label,
        "per_class": shown_classes(r.per_class),
        "classes_total": len(r.per_class),
        "figures": figures,
        "robustness": r.robustness,
        "config": json.dumps(r.summary["config"], indent=2),
        "environment": json.dumps(r.summary.get("environment", {}), indent=2),
        "name": r.path.name,
    }


def _render(title: str, study: dict, single_run: bool, out: Path, sections: list[dict], run_count: int) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("cnnbench.report", "templates"), autoescape=select_autoescape(["html"]))
    env.filters.update(minutes=minutes, millions=millions, rate=rate, megabytes=megabytes, code=inline_code)
    env.globals.update(
        pct=pct,
        top1_cell=top1_cell,
        TOP1_LEGEND=TOP1_LEGEND,
        PAIRS_LEGEND=PAIRS_LEGEND,
        STATUS_LEGEND=STATUS_LEGEND,
        eps_label=eps_label,
    )
    return env.get_template("report.html").render(  # the template, named as the page it makes
        title=title,
        study=study,
        single_run=single_run,
        target=str(out),
        sections=sections,  # the template escapes the title
        generated=datetime.now().strftime("%Y-%m-%d %H:%M"),
        run_count=run_count,
    )
