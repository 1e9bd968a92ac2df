"""Comparison tables and findings, computed only from what run folders hold."""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from ..fileio import read_csv, read_json, write_csv, write_text
from ..models.registry import variant_description

COMPARISON_COLUMNS = [
    "model", "variant", "dataset", "data_source", "seeds", "epochs", "params", "macs", "test_loss", "test_top1",
    "test_top5", "test_top1_std", "test_top5_std", "train_time_s", "time_per_epoch_s", "images_per_s",
    "infer_images_per_s", "peak_memory_mb", "device", "precision",
]

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


@dataclass
class Group:
    """All seeds of one (model, variant, data set)."""

    model: str
    variant: str
    dataset: str
    runs: list[RunRecord]

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

    def row(self) -> dict:
        s = self.first
        return {
            "model": self.model, "variant": self.variant, "dataset": self.dataset, "data_source": s["data_source"],
            "seeds": " ".join(str(r.summary["seed"]) for r in self.runs), "epochs": s["epochs"],
            "params": s["params"], "macs": s["macs"],
            "test_loss": self.mean("test_loss"), "test_top1": self.mean("test_top1"), "test_top5": self.mean("test_top5"),
            "test_top1_std": self.std("test_top1"), "test_top5_std": self.std("test_top5"),
            "train_time_s": self.mean("train_time_s"), "time_per_epoch_s": self.mean("time_per_epoch_s"),
            "images_per_s": self.mean("images_per_s"), "infer_images_per_s": self.mean_if_known("infer_images_per_s"),
            "peak_memory_mb": self.mean_if_known("peak_memory_mb"), "device": s["environment"]["device_name"], "precision": s["precision"],
        }


def load_runs(study_dir: Path) -> list[RunRecord]:
    records = []
    for summary_path in sorted((study_dir / "runs").glob("*/summary.json")):
        run = summary_path.parent
        per_class = read_csv(run / "per_class.csv") if (run / "per_class.csv").exists() else []
        records.append(RunRecord(run, read_json(summary_path), read_csv(run / "metrics.csv"), per_class))
    return records


def group_runs(records: list[RunRecord]) -> list[Group]:
    groups: dict[tuple, Group] = {}
    for r in records:
        s = r.summary
        key = (s["dataset"], s["model"], s["variant"])
        groups.setdefault(key, Group(s["model"], s["variant"], s["dataset"], [])).runs.append(r)
    for g in groups.values():
        g.runs.sort(key=lambda r: r.summary["seed"])
    return [groups[k] for k in sorted(groups)]


def pct(mean: float, std: float | None = None) -> str:
    return f"{mean:.2%}" + (f" ± {std * 100:.2f}" if std else "")


def minutes(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}'{s:02d}''"


def millions(n: float) -> str:
    return f"{n / 1e6:.2f} M"


def rate(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def megabytes(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f} MB"


def write_comparison(study_dir: Path, groups: list[Group]) -> list[dict]:
    rows = [g.row() for g in groups]
    write_csv(study_dir / "comparison.csv", rows, COMPARISON_COLUMNS)
    write_text(study_dir / "comparison.md", comparison_markdown(groups))
    return rows


def comparison_markdown(groups: list[Group]) -> str:
    out = ["# Comparison", ""]
    for dataset in sorted({g.dataset for g in groups}):
        gs = [g for g in groups if g.dataset == dataset]
        out += [f"## {dataset}", "", f"Data: {gs[0].first['data_source']}. Metrics at the last epoch; mean ± std over seeds "
                "(std in percentage points). Inference images/s: test-set evaluation speed (median over epochs); peak "
                "memory: process resident peak on CPU (data set included), allocator peak on CUDA.", "",
                "| model | variant | seeds | epochs | params | MACs | test loss | top-1 | top-5 | training time | per epoch | train images/s | "
                "inference images/s | peak memory | device, precision |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for g in gs:
            r = g.row()
            out.append(
                f"| {g.model} | {g.variant} ({variant_description(g.model, g.variant)}) | {len(g.runs)} | {r['epochs']} | {millions(r['params'])} | {r['macs'] / 1e9:.3f} G | "
                f"{r['test_loss']:.4f} | {pct(r['test_top1'], r['test_top1_std'])} | {pct(r['test_top5'], r['test_top5_std'])} | "
                f"{minutes(r['train_time_s'])} | {r['time_per_epoch_s']:.1f} s | {r['images_per_s']:.0f} | "
                f"{rate(r['infer_images_per_s'])} | {megabytes(r['peak_memory_mb'])} | {r['device']}, {r['precision']} |")
        if study_reference(dataset):
            table, ref = study_reference(dataset)
            out += ["", f"The study's {table} for comparison (its own setup and hardware; training time as printed):", "",
                    "| model | test loss | top-1 | top-5 | training time |", "|---|---|---|---|---|"]
            out += [f"| {m} | {loss:.4f} | {pct(t1)} | {pct(t5)} | {t} |" for m, loss, t1, t5, t in ref]
        out.append("")
    return "\n".join(out)


def findings(groups: list[Group]) -> dict[str, list[str]]:
    """Plain-language findings per data set, written from the measured numbers."""
    result: dict[str, list[str]] = {}
    for dataset in sorted({g.dataset for g in groups}):
        gs = sorted((g for g in groups if g.dataset == dataset), key=lambda g: -g.mean("test_top1"))
        notes = []
        best = gs[0]
        if len(gs) == 1:
            notes.append(f"{best.model} ({best.variant}) reached {pct(best.mean('test_top1'))} top-1 in "
                         f"{minutes(best.mean('train_time_s'))} of training.")
        for other in gs[1:]:
            gap = best.mean("test_top1") - other.mean("test_top1")
            time_ratio = best.mean("train_time_s") / max(other.mean("train_time_s"), 1e-9)
            param_ratio = best.first["params"] / max(other.first["params"], 1)
            cost = (f"{time_ratio:.2f}x the training time" if abs(time_ratio - 1) > 0.05 else "about the same training time")
            if gap < 0.0005:
                notes.append(f"{best.model} ({best.variant}) and {other.model} ({other.variant}) are level at "
                             f"{pct(best.mean('test_top1'))} top-1; {best.model} takes {cost} "
                             f"({minutes(best.mean('train_time_s'))} vs {minutes(other.mean('train_time_s'))}).")
                continue
            notes.append(
                f"{best.model} ({best.variant}) is the more accurate: {pct(best.mean('test_top1'))} top-1 against "
                f"{pct(other.mean('test_top1'))} for {other.model} ({other.variant}), {gap * 100:+.2f} points, at {cost} "
                f"({minutes(best.mean('train_time_s'))} vs {minutes(other.mean('train_time_s'))}) and {param_ratio:.2f}x the "
                f"parameters ({millions(best.first['params'])} vs {millions(other.first['params'])}); test loss "
                f"{best.mean('test_loss'):.4f} vs {other.mean('test_loss'):.4f}.")
            if len(best.runs) > 1 and len(other.runs) > 1:
                spread = best.std("test_top1") + other.std("test_top1")
                wins = sum(a.summary["test_top1"] > b.summary["test_top1"] for a, b in zip(best.runs, other.runs))
                if wins < min(len(best.runs), len(other.runs)):
                    notes.append(f"The seeds disagree: {best.model} wins in only {wins} of {min(len(best.runs), len(other.runs))} "
                                 f"paired seeds, so the ranking of {best.model} and {other.model} is not settled by these runs.")
                elif gap <= spread:
                    notes.append(f"The gap ({gap * 100:.2f} points) is within the spread over seeds ({spread * 100:.2f} points).")
                else:
                    notes.append(f"{best.model} wins in every seed; the gap exceeds the spread over seeds.")
            elif gap < 0.002:
                notes.append("With one seed each, a gap this small is within what a different seed can change.")
        fastest = min(gs, key=lambda g: g.mean("time_per_epoch_s"))
        if len(gs) > 1:
            notes.append(f"Fastest to train: {fastest.model} at {fastest.mean('images_per_s'):.0f} images/s "
                         f"({fastest.mean('time_per_epoch_s'):.1f} s per epoch).")
        result[dataset] = notes
    return result
