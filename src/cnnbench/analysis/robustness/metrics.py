"""Corruption errors as Hendrycks & Dietterich (2019) define them, with AlexNet replaced by a baseline model.

CE_c = sum_s E(c, s) / sum_s E_base(c, s); relative CE_c = sum_s (E(c, s) - E_clean) / sum_s (E_base(c, s) -
E_base,clean); mCE and relative mCE are their means over corruptions (as fractions: the baseline scores 1)."""

from __future__ import annotations

import numpy as np


def corruption_errors(model: dict, baseline: dict, full_set=None) -> dict | None:
    """``model``/``baseline``: {"clean_top1": float, "corruptions": {name: {severity: top1}}}, e.g. robustness.json.
    Only the cells both measured count; None when they share none or the baseline makes no errors there.
    ``full_set``: the benchmark's corruption names; mCE is the benchmark's only when every one of them counts, and
    is otherwise given as ``partial_mce`` over ``counted`` corruptions (mce and relative_mce then None)."""
    ce, rel = {}, {}
    for name, by_sev in model["corruptions"].items():
        base = baseline["corruptions"].get(name, {})
        sev = [s for s in by_sev if s in base]
        if not sev:
            continue
        err = np.array([1 - by_sev[s] for s in sev])
        base_err = np.array([1 - base[s] for s in sev])
        if base_err.sum() > 0:
            ce[name] = float(err.sum() / base_err.sum())
        base_gap = (base_err - (1 - baseline["clean_top1"])).sum()
        if base_gap > 0:
            rel[name] = float((err - (1 - model["clean_top1"])).sum() / base_gap)
    if not ce:
        return None
    mce = float(np.mean(list(ce.values())))
    complete = full_set is None or set(full_set) <= set(ce)
    return {
        "ce": ce,
        "mce": mce if complete else None,
        "relative_ce": rel,
        "relative_mce": float(np.mean(list(rel.values()))) if rel and complete else None,
        "partial_mce": None if complete else mce,
        "counted": sorted(ce),
    }


def mean_results(results: list[dict]) -> dict:
    """Cell-by-cell mean of several seeds' robustness.json (the cells all of them measured)."""
    first = results[0]
    corruptions = {
        n: {
            s: float(np.mean([r["corruptions"][n][s] for r in results]))
            for s in sev
            if all(s in r["corruptions"].get(n, {}) for r in results)
        }
        for n, sev in first["corruptions"].items()
    }
    adversarial = {
        a: {
            e: float(np.mean([r["adversarial"][a][e] for r in results]))
            for e in by_eps
            if all(e in r["adversarial"].get(a, {}) for r in results)
        }
        for a, by_eps in first["adversarial"].items()
    }
    cells = [v for sev in corruptions.values() for v in sev.values()]
    return {
        "clean_top1": float(np.mean([r["clean_top1"] for r in results])),
        "corruptions": corruptions,
        "mean_corruption_top1": float(np.mean(cells)) if cells else None,
        "adversarial": adversarial,
        "images": first["images"],
        "source": first["source"],
        "corruption_set": first.get("corruption_set", ""),
        "substitutes": first.get("substitutes", {}),
        "seeds": len(results),
    }
