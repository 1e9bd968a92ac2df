"""Runs grouped into the comparison's rows: one configuration per row (model, variant, data set and every recipe
setting), its seeds aggregated, computed only from what run folders hold."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from functools import cached_property

from ..analysis.robustness.metrics import mean_results
from ..analysis.statistics import t_interval, wilson_interval
from ..config import RESULT_NEUTRAL_FIELDS, saved_config_values
from ..errors import ConfigError
from ..layout import (
    pretrained_label,
)
from ..models.registry import variant_description, width_description
from .run_records import RunRecord, device_of

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
