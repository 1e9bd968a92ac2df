"""Robustness in the report: corruption errors against a baseline model, and the figures, from robustness.json."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..analysis.robustness import masking
from ..analysis.robustness.corruptions import CIFAR, DIGITS, corruption_set
from ..analysis.robustness.metrics import corruption_errors
from ..errors import ConfigError, did_you_mean
from ..fileio import read_json
from ..layout import TRANSFER_JSON
from . import plots
from .formatting import eps_label
from .tables import Group

FAMILIES = {name: c.family for name, c in {**CIFAR, **DIGITS}.items()}


def choose_baseline(groups: list[Group], baseline: str | None, study_models: list[str]) -> str | None:
    """The model corruption errors are relative to: ``baseline``, else the study's first model that has results."""
    with_results = [g for g in groups if g.robustness]
    if not with_results:
        return None
    names = {g.model for g in with_results} | {g.label for g in with_results}
    if baseline is not None:
        if baseline not in names:
            raise ConfigError(
                f"--baseline {baseline!r} has no robustness results in this study"
                f"{did_you_mean(baseline, names)}. Models with results: {', '.join(sorted(names))}."
            )
        return baseline
    ordered = [m for m in study_models if m in names] or [with_results[0].model]
    return ordered[0]


def attach_corruption_errors(groups: list[Group], baseline: str | None) -> None:
    """Set each group's mCE against the baseline of its own data set (same variant-free model name or label)."""
    if baseline is None:
        return
    for dataset in {g.dataset for g in groups}:
        gs = [g for g in groups if g.dataset == dataset and g.robustness]
        base = next((g for g in gs if baseline in (g.label, g.model)), None)
        if base is None:
            continue
        for g in gs:
            channels = int(g.first["input_shape"][0])
            full = [n for n in corruption_set(channels)]  # mCE is the benchmark's over all of them, or partial
            g.corruption_errors = corruption_errors(g.robustness, base.robustness, full)
            g.mce_baseline = base.label


def _natural(group: Group) -> bool:
    return group.runs[0].natural


def robustness_rows(groups: list[Group]) -> list[dict]:
    """One row per model with robustness results: what the report's and comparison.md's tables show."""
    rows = []
    for g in groups:
        rob = g.robustness
        if rob is None:
            continue
        ce = g.corruption_errors or {}
        adversarial = {a: sorted((float(e), v) for e, v in by_eps.items()) for a, by_eps in rob["adversarial"].items()}
        rows.append(
            {
                "label": g.label,
                "seeds": len([r for r in g.runs if r.robustness]),
                "images": rob["images"],
                "clean": rob["clean_top1"],
                "mean_corruption": rob["mean_corruption_top1"],
                "mce": ce.get("mce"),
                "relative_mce": ce.get("relative_mce"),
                "adversarial": adversarial,
                "set": rob["corruption_set"],
                "substitutes": rob["substitutes"],
                "baseline": g.mce_baseline,
                "is_baseline": g.mce_baseline is not None and g.label == g.mce_baseline,  # 100% by definition
                "natural": _natural(g),
                # any seed's attack flagged by the masking checks flags the row (robustness.json says which)
                "masking": next((v for r in g.runs if (v := masking_verdict(r.robustness, _natural(g)))), None),
            }
        )
    return rows


def masking_verdict(result: dict | None, natural: bool = True) -> str | None:
    """The run's masking verdict where a check failed, else None. Results written before the PGD-against-AutoAttack
    check existed get it here, from their own numbers."""
    if not result:
        return None
    stored = result.get("masking") or {"checks": []}
    checks = [masking.Check(**c) for c in stored.get("checks", [])]
    if not any(c.name == "PGD as strong as AutoAttack" for c in checks):
        checks += masking.pgd_not_weaker_than_autoattack(result)
    verdict = masking.summary(checks)
    return masking.rewrite_eps(verdict["verdict"], lambda eps: eps_label(eps, natural)) if verdict["suspect"] else None


def robustness_markdown(groups: list[Group]) -> list[str]:
    rows = robustness_rows(groups)
    if not rows:
        return []
    fmt = lambda v: "-" if v is None else f"{v:.2%}"  # noqa: E731
    attacks = [(a, e) for a, pts in rows[0]["adversarial"].items() for e, _ in pts]
    out = [
        "",
        f"Robustness ({rows[0]['set']}; {rows[0]['images']} test images per cell, the same for every model"
        + (
            f"; substitutes: {'; '.join(f'{k}: {v}' for k, v in rows[0]['substitutes'].items())}"
            if rows[0]["substitutes"]
            else ""
        )
        + f"; mCE relative to {rows[0]['baseline'] or '-'}):",
        "",
        "| model | seeds | clean top-1 (these images) | mean corruption top-1 | mCE | relative mCE | "
        + " | ".join(f"{a} eps {eps_label(e, rows[0]['natural'])}" for a, e in attacks)
        + " |",
        "|---" * (6 + len(attacks)) + "|",
    ]
    for r in rows:
        adv = {(a, e): v for a, pts in r["adversarial"].items() for e, v in pts}
        out.append(
            f"| {r['label']} | {r['seeds']} | {fmt(r['clean'])} | {fmt(r['mean_corruption'])} | {fmt(r['mce'])} | "
            f"{fmt(r['relative_mce'])} | " + " | ".join(fmt(adv.get(k)) for k in attacks) + " |"
        )
    out += ["", *(f"**{r['label']}: {r['masking']}** (gradient-masking checks)" for r in rows if r["masking"])]
    return out


def run_heatmap(run, path: Path, title: str) -> Path | None:
    rob = run.robustness
    if not rob or not rob["corruptions"]:
        return None
    names = list(rob["corruptions"])
    severities = sorted({int(s) for sev in rob["corruptions"].values() for s in sev})
    grid = np.array([[rob["corruptions"][n].get(str(s), np.nan) for s in severities] for n in names])
    return plots.robustness_heatmap(
        grid,
        names,
        severities,
        rob["clean_top1"],
        path,
        title=f"{title}: top-1 under corruptions ({rob['images']} images per cell)",
    )


def dataset_figures(groups: list[Group], folder: Path, dataset: str) -> dict:
    """Accuracy against severity per corruption family and against eps per attack, models side by side."""
    series = [(g.label, g.robustness) for g in groups if g.robustness]
    if not series:
        return {}
    natural = any(_natural(g) for g in groups if g.robustness)
    figures = {}
    by_family = {}
    for label, rob in series:
        for name, sev in rob["corruptions"].items():
            fam = FAMILIES.get(name, "other")
            for s, v in sev.items():
                by_family.setdefault(fam, {}).setdefault(label, {}).setdefault(int(s), []).append(v)
    if by_family:
        curves = {
            fam: {label: (sorted(d), [float(np.mean(d[s])) for s in sorted(d)]) for label, d in per.items()}
            for fam, per in by_family.items()
        }
        clean = {label: rob["clean_top1"] for label, rob in series}
        figures["severity"] = plots.curves_by_panel(
            curves,
            clean,
            "severity",
            folder / "robustness_severity.png",
            title=f"{dataset}: top-1 against corruption severity (mean over each family)",
        )
    attacks = {}
    for label, rob in series:
        for attack, by_eps in rob["adversarial"].items():
            points = sorted((float(e), v) for e, v in by_eps.items())
            if not points or points[0][0] > 0:
                points = [(0.0, rob["clean_top1"])] + points
            attacks.setdefault(attack, {})[label] = ([p[0] for p in points], [p[1] for p in points])
    if attacks:
        figures["eps"] = plots.curves_by_panel(
            attacks,
            None,
            "eps (L-inf" + (", in 1/255)" if natural else ", pixels in [0, 1])"),
            folder / "robustness_eps.png",
            title=f"{dataset}: top-1 against adversarial eps",
            x_labels=(lambda e: eps_label(e, natural)) if natural else None,
        )
    return figures


def transfer_rows(study_dir: Path, dataset: str) -> list[dict]:
    """The study's transfer attacks on this data set (transfer.json), each with whether it passed the check that a
    transferred attack does not beat the target's own white-box attack; [] where none ran or the file is damaged."""
    try:
        rows = read_json(Path(study_dir) / TRANSFER_JSON)["rows"]
        return [
            {**r, "suspect": r["transfer_top1"] < r["white_box_top1"] - masking.TOLERANCE}
            for r in rows
            if r["dataset"] == dataset
        ]
    except (OSError, ValueError, KeyError, TypeError):
        return []
