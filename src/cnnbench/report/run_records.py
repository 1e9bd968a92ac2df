"""A run folder as the report reads it: summary.json and metrics.csv checked field by field (a damaged folder
is left out with a warning, never a traceback), per-class and robustness files, and which derived files went
stale."""

from __future__ import annotations

import csv
import json
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ..engine.run_folder import DamagedRun, read_metrics, read_summary
from ..fileio import read_csv, read_json
from ..layout import (
    METRICS_CSV,
    MISCLASSIFIED_CSV,
    PER_CLASS_CSV,
    PREDICTIONS,
    ROBUSTNESS_JSON,
    ROBUSTNESS_NPZ,
    RUNS_DIR,
    SUMMARY,
)
from .formatting import eps_label


@dataclass
class RunRecord:
    path: Path
    summary: dict
    rows: list[dict]
    per_class: list[dict]
    robustness: dict | None = None  # robustness.json, once `cnnbench robustness` has run
    robustness_stale: str = ""  # why robustness.json was left out: measured on weights the run has trained past

    @property
    def seed(self) -> int:
        return int(self.summary["seed"])

    @cached_property  # read once, however many pairs the run is in
    def test_correct(self) -> np.ndarray | None:
        """Which test examples the run got right (top-1), from predictions.npz or, where the raw logits are not
        kept (published studies), from misclassified.csv, which lists every wrong example. None without either."""
        if (self.path / PREDICTIONS).exists():
            try:
                with np.load(self.path / PREDICTIONS) as z:
                    correct = np.asarray(z["preds"] == z["targets"], dtype=bool)
                if correct.shape == (int(self.summary["test_images"]),):
                    return correct
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
                pass  # damaged or hand-made: misclassified.csv below, else no per-example tests
            print(
                f"warning: {self.path / PREDICTIONS} is damaged or does not fit summary.json; not used", file=sys.stderr
            )
        if (self.path / MISCLASSIFIED_CSV).exists():
            correct = np.ones(int(self.summary["test_images"]), dtype=bool)
            try:
                correct[[int(r["index"]) for r in read_csv(self.path / MISCLASSIFIED_CSV)]] = False
            except (KeyError, ValueError, IndexError, TypeError, csv.Error):
                print(f"warning: {self.path / MISCLASSIFIED_CSV} is damaged; not used", file=sys.stderr)
                return None
            return correct
        return None

    @cached_property
    def robust_correct(self) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
        """robustness.npz as paired measures (robustness_measures); None where it is absent or damaged."""
        path = self.path / ROBUSTNESS_NPZ
        if self.robustness is None:  # none, or stale (it came with robustness.json, written from the same weights)
            return None
        return robustness_measures(path, self.natural) if path.exists() else None

    @property
    def natural(self) -> bool:
        """Colour images (eps read as k/255), not grey digits."""
        return int(self.summary.get("input_shape", [3])[0]) == 3


def robustness_measures(npz_path: Path, natural: bool) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """From robustness.npz: the test images' indices, and per measure which (image, cell) each model got right: each
    corruption family over its corruptions and severities, every corruption together, and each attack at each eps."""
    from ..analysis.robustness.corruptions import CIFAR, DIGITS

    families = {name: c.family for name, c in {**CIFAR, **DIGITS}.items()}
    try:
        with np.load(npz_path) as z:
            index, cells = z["index"], {k: z[k].astype(bool) for k in z.files if k != "index"}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    grouped: dict[str, list[np.ndarray]] = {}
    for key in sorted(cells):
        parts = key.split("|")
        if parts[0] == "corruption":
            grouped.setdefault(f"corruptions: {families.get(parts[1], 'other')}", []).append(cells[key])
            grouped.setdefault("corruptions: all", []).append(cells[key])
        elif parts[0] not in ("clean", "autoattack-white-box"):  # the latter: a masking check's, not a result
            grouped[f"{parts[0]} eps {eps_label(float(parts[1]), natural)}"] = [cells[key]]
    return index, {measure: np.concatenate(arrays) for measure, arrays in grouped.items()}


def load_runs(study_dir: Path, warn: Callable[[str], None] | None = None) -> list[RunRecord]:
    """Every finished run of the study (see load_run_dirs)."""
    return load_run_dirs([p.parent for p in sorted((study_dir / RUNS_DIR).glob(f"*/{SUMMARY}"))], warn)


def load_run_dirs(run_dirs: list[Path], warn: Callable[[str], None] | None = None) -> list[RunRecord]:
    """The finished runs among ``run_dirs``. A run whose files are damaged (hand-edited, truncated) is left out,
    and ``warn`` (by default, stderr) is told which file and what is wrong, so one bad folder never stops a
    report."""
    warn = warn or (lambda text: print(f"warning: {text}", file=sys.stderr))
    records = []
    for run in run_dirs:
        summary_path = run / SUMMARY
        try:
            summary = read_summary(summary_path)
            rows = read_metrics(run / METRICS_CSV) if (run / METRICS_CSV).exists() else []
            per_class = read_csv(run / PER_CLASS_CSV) if (run / PER_CLASS_CSV).exists() else []
            robustness = read_json(run / ROBUSTNESS_JSON) if (run / ROBUSTNESS_JSON).exists() else None
        except (DamagedRun, json.JSONDecodeError, UnicodeDecodeError, csv.Error) as e:
            warn(f"left {run.name} out of the report: {e}")
            continue
        stale = stale_measurement(robustness, rows)
        if stale:  # not a damaged file: said, never a reason to refuse the report
            print(
                f"warning: {run.name}: its {ROBUSTNESS_JSON} was {stale}; left out of the report (measure the "
                f"finished run with `cnnbench robustness {run}`, or `cnnbench compare ... --robustness` again)",
                file=sys.stderr,
            )
            robustness = None
        records.append(RunRecord(run, summary, rows, per_class, robustness, stale or ""))
    return records


def stale_measurement(derived: dict | None, rows: list[dict]) -> str | None:
    """Why a file derived from a run's weights (robustness.json, insight.json, evaluation.json: each names the epoch
    it measured) no longer describes the run: the run trained past that epoch since (it was measured while the run
    was interrupted, then the run resumed). None: it describes the run's last weights, or cannot tell."""
    measured = derived.get("epoch") if isinstance(derived, dict) else None
    if not rows or type(measured) is not int:
        return None
    last = int(rows[-1]["epoch"])
    if measured >= last:
        return None
    return f"measured on the weights of epoch {measured}, and the run has since trained to epoch {last}"


def device_of(run: RunRecord) -> str:
    """The machine a run trained on, by name (a CPU model or a GPU's)."""
    return str(run.summary.get("environment", {}).get("device_name") or run.summary.get("device", "unknown"))
