"""Comparison tables and findings, computed only from what run folders hold."""

from __future__ import annotations

import csv
import json
import math
import statistics
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ..analysis.robustness.metrics import mean_results
from ..analysis.statistics import t_interval, wilson_interval
from ..config import RESULT_NEUTRAL_FIELDS, saved_config_values
from ..errors import ConfigError
from ..fileio import read_csv, read_json
from ..layout import (
    METRICS_CSV,
    MISCLASSIFIED_CSV,
    PER_CLASS_CSV,
    PREDICTIONS,
    ROBUSTNESS_JSON,
    ROBUSTNESS_NPZ,
    SUMMARY,
    pretrained_label,
)
from ..models.registry import variant_description, width_description

COMPARISON_COLUMNS = [
    "model",
    "variant",
    "dataset",
    "data_source",
    "seeds",
    "epochs",
    "params",
    "macs",
    "evaluated_on",
    "test_images",
    "test_loss",
    "test_top1",
    "test_top5",
    "test_top1_tta",
    "test_top1_std",
    "test_top5_std",
    "test_top1_ci_low",
    "test_top1_ci_high",
    "test_top1_min",
    "test_top1_max",
    "test_top1_mean_ci_low",
    "test_top1_mean_ci_high",
    "val_images",
    "val_top1",
    "val_top1_std",
    "train_time_s",
    "time_per_epoch_s",
    "images_per_s",
    "infer_images_per_s",
    "peak_memory_mb",
    "device",
    "precision",
    "robust_images",
    "corruption_source",
    "robust_clean_top1",
    "mean_corruption_top1",
    "mce",
    "relative_mce",
    "mce_baseline",
    "adv_eps",
    "fgsm_top1",
    "pgd_top1",
]

# Settings that do not change what a run learns: runs that differ only in these still share a row. The device is
# one: the same recipe on a CPU and a GPU differs in rounding and speed, not in what it is (the row's device column
# names every machine its seeds ran on), so seeds of one protocol may train wherever is fastest.
NOT_RECIPE = ("seed", "eval_batch_size", "device") + RESULT_NEUTRAL_FIELDS

# The study's Tables 3 and 4 (loss, top-1, top-5, training time as printed), for side-by-side display.
STUDY_TABLES = {
    "mnist": ("Table 3", [("VGG16", 0.0333, 0.990, 0.999, "10'40''"), ("ResNet18", 0.0329, 0.992, 1.0, "2'55''")]),
    "cifar10": ("Table 4", [("VGG16", 0.4397, 0.865, 0.993, "18'6''"), ("ResNet18", 0.6462, 0.785, 0.986, "10'4''")]),
}


def study_reference(dataset: str):
    """The study's table for this data set (its MNIST table also stands beside the shipped MNIST subset)."""
    return STUDY_TABLES.get(dataset.removesuffix("_demo"))


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


def eps_label(eps: float, natural: bool) -> str:
    """eps as the literature writes it: a fraction of 255 for natural images (8/255), decimals for digits (0.3)."""
    steps = eps * 255
    if natural and eps > 0 and abs(steps - round(steps)) < 1e-3:
        return f"{round(steps)}/255"
    return f"{eps:.4g}"


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


@dataclass
class Group:
    """All seeds of one configuration (model, variant, data set and every recipe setting)."""

    model: str
    variant: str
    dataset: str
    runs: list[RunRecord]
    label: str = ""  # how findings and pairs name it: the model, plus the variant where a data set has both
    start: str = ""  # "" from scratch, else ", fine-tuned from <weights>" (tables add it to the variant)
    width: float = 1.0  # every layer's channels times this (--width)
    corruption_errors: dict | None = None  # mCE against the study's baseline model (report.robustness sets it)
    mce_baseline: str | None = None

    @property
    def scaled(self) -> str:
        return width_description(self.width)

    @property
    def qualifier(self) -> str:
        """What follows the model's name in labels: variant, width and start, e.g. "small, 0.25x width"."""
        return f"{self.variant}{self.scaled}{self.start}"

    @property
    def described(self) -> str:
        """The qualifier with what the variant means for this model, for the comparison tables."""
        return f"{self.variant} ({variant_description(self.model, self.variant)}){self.scaled}{self.start}"

    def values(self, key: str) -> list[float]:
        return [float(r.summary[key]) for r in self.runs]

    def mean(self, key: str) -> float:
        return statistics.fmean(self.values(key))

    def mean_if_known(self, key: str) -> float | None:
        """Mean over the seeds that recorded ``key`` (runs from older versions lack some figures)."""
        v = [float(r.summary[key]) for r in self.runs if r.summary.get(key) is not None]
        return statistics.fmean(v) if v else None

    def std(self, key: str) -> float:
        v = self.values(key)
        return statistics.stdev(v) if len(v) > 1 else 0.0

    @property
    def first(self) -> dict:
        return self.runs[0].summary

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.runs]

    def by_seed(self) -> dict[int, RunRecord]:
        return {r.seed: r for r in self.runs}

    @cached_property  # the report asks for it per table, figure and column
    def robustness(self) -> dict | None:
        """Mean over the seeds that have robustness results (cell by cell); None when none has."""
        found = [r.robustness for r in self.runs if r.robustness]
        return mean_results(found) if found else None

    def robustness_row(self) -> dict:
        rob = self.robustness
        if rob is None:
            return {}
        ce = self.corruption_errors or {}
        row = {
            "robust_images": rob["images"],
            "corruption_source": rob["source"],
            "robust_clean_top1": rob["clean_top1"],
            "mean_corruption_top1": rob["mean_corruption_top1"],
            "mce": ce.get("mce"),
            "relative_mce": ce.get("relative_mce"),
            "mce_baseline": self.mce_baseline if ce else None,
        }
        for attack, by_eps in rob["adversarial"].items():
            nonzero = sorted((float(e), v) for e, v in by_eps.items() if float(e) > 0)
            if nonzero:  # the smallest eps: the one that separates standard models
                row.update({"adv_eps": nonzero[0][0], f"{attack}_top1": nonzero[0][1]})
        return row

    @property
    def device_names(self) -> set[str]:
        return {device_of(r) for r in self.runs}

    def devices(self) -> str:
        """The machine the runs trained on; where seeds trained on different ones, each with its seeds, so that a
        mean training time over machines is not read as one machine's speed."""
        return self._by_seed(lambda r: r.summary["environment"]["device_name"])

    def precisions(self) -> str:
        """The precision the runs trained in ("auto" resolves per machine); where seeds differ, each with its seeds."""
        return self._by_seed(lambda r: r.summary["precision"])

    def _by_seed(self, value) -> str:
        by_value: dict[str, list[str]] = {}
        for r in self.runs:
            by_value.setdefault(value(r), []).append(str(r.summary["seed"]))
        if len(by_value) == 1:
            return next(iter(by_value))
        return "; ".join(
            f"{v} (seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)})" for v, seeds in by_value.items()
        )

    def row(self) -> dict:
        s = self.first
        n = int(s["test_images"])
        top1 = self.values("test_top1")
        # Wilson: how far the test set's size alone lets the mean accuracy move; t: how far the seeds do.
        ci_low, ci_high = wilson_interval(round(statistics.fmean(top1) * n), n)
        mean_ci = t_interval(top1)
        val = [float(r.summary["val_top1"]) for r in self.runs if r.summary.get("val_top1") is not None]
        return {
            "model": self.model,
            "variant": self.qualifier,
            "variant_described": self.described,
            "dataset": self.dataset,
            "data_source": s["data_source"],
            "seeds": " ".join(str(seed) for seed in self.seeds),
            "epochs": s["epochs"],
            "params": s["params"],
            "macs": s["macs"],
            "evaluated_on": "test",
            "test_images": n,
            "test_loss": self.mean("test_loss"),
            "test_top1": self.mean("test_top1"),
            "test_top5": self.mean("test_top5"),
            "test_top1_tta": self.mean_if_known("test_top1_tta"),
            "test_top1_std": self.std("test_top1"),
            "test_top5_std": self.std("test_top5"),
            "test_top1_ci_low": ci_low,
            "test_top1_ci_high": ci_high,
            "test_top1_min": min(top1),
            "test_top1_max": max(top1),
            "test_top1_mean_ci_low": mean_ci[1] if mean_ci else None,
            "test_top1_mean_ci_high": mean_ci[2] if mean_ci else None,
            "val_images": s["config"].get("val_split") or None if val else None,
            "val_top1": statistics.fmean(val) if val else None,
            "val_top1_std": statistics.stdev(val) if len(val) > 1 else (0.0 if val else None),
            "train_time_s": self.mean("train_time_s"),
            "time_per_epoch_s": self.mean("time_per_epoch_s"),
            "images_per_s": self.mean("images_per_s"),
            "infer_images_per_s": self.mean_if_known("infer_images_per_s"),
            "peak_memory_mb": self.mean_if_known("peak_memory_mb"),
            "device": self.devices(),
            "precision": self.precisions(),
            **self.robustness_row(),
        }


def has_validation(groups: list[Group]) -> bool:
    """Whether any of these groups held out a validation split (--val-split): tables then show its column."""
    return any(r.summary.get("val_top1") is not None for g in groups for r in g.runs)


# What the report reads from every summary.json, and the kind of value each must be.
SUMMARY_FIELDS = {
    "model": str,
    "variant": str,
    "dataset": str,
    "data_source": str,
    "seed": int,
    "epochs": int,
    "test_images": int,
    "params": int,
    "macs": int,
    "test_loss": float,
    "test_top1": float,
    "test_top5": float,
    "train_time_s": float,
    "time_per_epoch_s": float,
    "images_per_s": float,
    "device": str,
    "precision": str,
    "config": dict,
    "input_shape": list,
}
METRIC_FIELDS = ("epoch", "train_loss", "train_acc", "test_loss", "test_top1", "test_top5")


class DamagedRun(ValueError):
    """A run folder file the report cannot use; the message names the file and what is wrong with it."""


def _check_value(where: str, key: str, value, kind: type) -> None:
    if kind in (int, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (kind is float or float(value).is_integer())
    else:
        ok = isinstance(value, kind)
    if not ok:
        shown = repr(value)[:60]
        raise DamagedRun(
            f"{where}: {key!r} is {shown}, not {'a finite number' if kind in (int, float) else kind.__name__}"
        )


def _read_summary(path: Path) -> dict:
    try:
        summary = read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DamagedRun(f"{path}: not valid JSON ({e})") from None
    if not isinstance(summary, dict):
        raise DamagedRun(f"{path}: holds a {type(summary).__name__}, not an object of fields")
    for key, kind in SUMMARY_FIELDS.items():
        if key not in summary:
            raise DamagedRun(f"{path}: the field {key!r} is missing")
        _check_value(str(path), key, summary[key], kind)
    if not 0 <= summary["test_top1"] <= 1 or not 0 <= summary["test_top5"] <= 1:
        raise DamagedRun(f"{path}: test_top1 and test_top5 must be fractions between 0 and 1")
    return summary


def _read_metrics(path: Path) -> list[dict]:
    try:
        rows = read_csv(path)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DamagedRun(f"{path}: unreadable ({e})") from None
    if not rows:
        raise DamagedRun(f"{path}: no epoch rows")
    for row in rows:
        for key in METRIC_FIELDS:
            try:
                value = float(row.get(key) or "nan")
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise DamagedRun(f"{path}: epoch row {row.get('epoch', '?')} has {key}={row.get(key)!r}, not a number")
    return rows


def load_runs(study_dir: Path, warn: Callable[[str], None] | None = None) -> list[RunRecord]:
    """Every finished run of the study (see load_run_dirs)."""
    return load_run_dirs([p.parent for p in sorted((study_dir / "runs").glob(f"*/{SUMMARY}"))], warn)


def load_run_dirs(run_dirs: list[Path], warn: Callable[[str], None] | None = None) -> list[RunRecord]:
    """The finished runs among ``run_dirs``. A run whose files are damaged (hand-edited, truncated) is left out,
    and ``warn`` (by default, stderr) is told which file and what is wrong, so one bad folder never stops a
    report."""
    warn = warn or (lambda text: print(f"warning: {text}", file=sys.stderr))
    records = []
    for run in run_dirs:
        summary_path = run / SUMMARY
        try:
            summary = _read_summary(summary_path)
            rows = _read_metrics(run / METRICS_CSV) if (run / METRICS_CSV).exists() else []
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


def recipe(summary: dict) -> dict:
    """A run's whole configuration except the seed and settings that do not change what it learns; a setting
    an older run's config lacks is what such a run did (config.saved_config_values)."""
    return {k: v for k, v in saved_config_values(summary.get("config", {})).items() if k not in NOT_RECIPE}


def _check_one_recipe(runs: list[RunRecord]) -> None:
    first = recipe(runs[0].summary)
    for r in runs[1:]:
        other = recipe(r.summary)
        keys = [k for k in first if first[k] != other.get(k)]
        if keys:
            changes = ", ".join(
                f"{k}: {first[k]!r} in {runs[0].path.name} but {other.get(k)!r} in {r.path.name}" for k in keys
            )
            raise ConfigError(
                f"{runs[0].path.parent} holds runs of {r.summary['model']} on {r.summary['dataset']} trained with "
                f"different settings ({changes}), and averaging them into one row would mix recipes. Keep one recipe "
                "per model in a study folder: move the other runs into a study of their own."
            )


def start_of(summary: dict) -> str:
    """How a run started, as tables add it to the variant: '' from scratch, else where its weights came from."""
    pretrained = summary.get("config", {}).get("pretrained")
    frozen = " (classifier only)" if summary.get("config", {}).get("freeze_backbone") else ""
    return f", fine-tuned{frozen} from {pretrained_label(pretrained)}" if pretrained else ""


def group_runs(records: list[RunRecord]) -> list[Group]:
    groups: dict[tuple, Group] = {}
    for r in records:
        s = r.summary
        width = float(s.get("config", {}).get("width", 1.0))
        key = (s["dataset"], s["model"], s["variant"], width, start_of(s))
        group = Group(s["model"], s["variant"], s["dataset"], [], start=start_of(s), width=width)
        groups.setdefault(key, group).runs.append(r)
    for g in groups.values():
        g.runs.sort(key=lambda r: r.seed)
        _check_one_recipe(g.runs)
        both_variants = sum(o.model == g.model and o.dataset == g.dataset for o in groups.values()) > 1
        g.label = f"{g.model} ({g.qualifier})" if both_variants else g.model
    return [groups[k] for k in sorted(groups)]


def pct(mean: float, std: float | None = None) -> str:
    return f"{mean:.2%}" + (f" ± {std * 100:.2f}" if std else "")


def minutes(seconds: float) -> str:
    """m'ss'' as the study prints training times; under a second says so instead of 0'00''."""
    if seconds < 0.5:
        return "under 1 s"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}'{s:02d}''"


def millions(n: float) -> str:
    return f"{n / 1e6:.2f} M"


def rate(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def megabytes(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f} MB"


def top1_cell(row: dict) -> str:
    """Top-1 with its uncertainty: one seed, the Wilson interval on the test set's size; several, ± std over seeds,
    the t-interval of the mean and the range."""
    if row["test_top1_mean_ci_low"] is None:
        return f"{pct(row['test_top1'])} [{row['test_top1_ci_low']:.2%}, {row['test_top1_ci_high']:.2%}]"
    return (
        f"{pct(row['test_top1'], row['test_top1_std'])} [{row['test_top1_mean_ci_low']:.2%}, "
        f"{row['test_top1_mean_ci_high']:.2%}] ({row['test_top1_min']:.2%} to {row['test_top1_max']:.2%})"
    )


TOP1_LEGEND = (
    "Top-1 is measured on the test set, once, at the last epoch. One seed: [95% Wilson interval for a test set "
    "of this size]; several seeds: ± standard deviation over seeds (percentage points), [95% t-interval of "
    "the mean over seeds] and (lowest to highest seed)."
)
