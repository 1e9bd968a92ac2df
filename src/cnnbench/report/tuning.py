"""How each model of a tuned study was tuned: its trials (settings and validation top-1), how sensitive it is to its
settings (the spread over trials, a property of the architecture in its own right), the settings chosen, and Optuna's
own slice plot of validation top-1 against each setting. Built from the trial folders and the study's journal."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..fileio import optuna_journal, read_json
from ..layout import SUMMARY, TUNING_FIGURES_DIR, TUNING_JOURNAL, run_dirs_of, safe_name, trial_dirs_of
from .plots import _figure_module, literal


def trial_rows(study_dir: Path, tuned_names: list[str]) -> list[dict]:
    """Every finished trial: data set, model, trial number, the tuned settings and validation top-1."""
    rows = []
    for folder in trial_dirs_of(study_dir):
        number = int(folder.name.split("-")[1])
        for run in run_dirs_of(folder):
            if not (run / SUMMARY).exists():
                continue
            summary = read_json(run / SUMMARY)
            config = summary.get("config", {})
            rows.append(
                {
                    "dataset": summary["dataset"],
                    "model": summary["model"],
                    "trial": number,
                    "settings": {k: config.get(k) for k in tuned_names},
                    "val_top1": summary.get("val_top1"),
                }
            )
    return sorted(rows, key=lambda r: (r["dataset"], r["model"], r["trial"]))


def sensitivity(rows: list[dict]) -> dict:
    """The spread of validation top-1 over one model's trials: best, worst, range and standard deviation."""
    values = np.array([r["val_top1"] for r in rows if r["val_top1"] is not None], dtype=float)
    if not len(values):
        return {}
    return {
        "best": float(values.max()),
        "worst": float(values.min()),
        "range": float(values.max() - values.min()),
        "std": float(values.std(ddof=1)) if len(values) > 1 else None,
    }


def slice_figure(study_dir: Path, dataset: str, model: str) -> Path | None:
    """Optuna's slice plot (validation top-1 against each setting) of one model's search, or None where the journal
    or Optuna is missing, or nothing finished."""
    journal = Path(study_dir) / TUNING_JOURNAL
    if not journal.exists():
        return None
    try:
        import optuna
    except ImportError:
        return None
    plt = _figure_module()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=f"{dataset}/{model}", storage=optuna_journal(journal))
        if not any(t.value is not None for t in study.get_trials(deepcopy=False)):
            return None
        with warnings.catch_warnings():  # Optuna marks its matplotlib plots experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            axes = optuna.visualization.matplotlib.plot_slice(study, target_name="validation top-1")
            figure = np.atleast_1d(axes).flat[0].figure
            figure.suptitle(
                f"{literal(model)} on {literal(dataset)}: validation top-1 of each trial against each setting"
            )
            path = Path(study_dir) / TUNING_FIGURES_DIR / f"slice-{safe_name(dataset)}-{safe_name(model)}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            figure.savefig(path, dpi=90, bbox_inches="tight")
            plt.close(figure)
    except (KeyError, ValueError, RuntimeError):
        return None
    return path


def tuning_section(study_dir: Path, study: dict, dataset: str, data_uri) -> dict | None:
    """The report's "How each model was tuned" for one data set; None for a study without a tuning phase."""
    tuning = study.get("tuning")
    if not isinstance(tuning, dict) or "space" not in tuning:
        return None
    names = [entry.split("=")[0] for entry in _entries(tuning["space"])]
    rows = [r for r in trial_rows(study_dir, names) if r["dataset"] == dataset]
    chosen = (tuning.get("chosen") or {}).get(dataset, {})
    models = []
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        figure = slice_figure(study_dir, dataset, model)
        for r in mine:
            r["cells"] = [setting_text(r["settings"][n]) for n in names]
        picked = chosen.get(model)
        picked = picked if isinstance(picked, dict) and isinstance(picked.get("params"), dict) else None
        picked_text = ", ".join(f"{k} {setting_text(v)}" for k, v in picked["params"].items()) if picked else ""
        models.append(
            {
                "model": model,
                "trials": mine,
                "chosen_text": picked_text,
                "sensitivity": sensitivity(mine),
                "chosen": picked,
                "figure": data_uri(figure) if figure else None,
            }
        )
    return {"declared": tuning, "names": names, "models": models}


def setting_text(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _entries(space: str) -> list[str]:
    """The space's entries (name=...), its choices' commas aside."""
    return [token for token in space.split(",") if "=" in token]
