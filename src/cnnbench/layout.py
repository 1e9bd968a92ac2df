"""Where a run or a study keeps what (paths only): every floor may use it, it imports nothing of cnnbench's."""

from __future__ import annotations

import re
from pathlib import Path

# In a study folder
STUDY_SPEC = "study.json"
RUNS_DIR = "runs"  # one run folder per cell: runs/<model>-<data set>-seed<n>/
EVENTS_JSONL = "events.jsonl"  # the launchers' journal, one line per cell event (launch/events.py)
SLURM_DIR = "slurm"  # submitit's job folders (logs, pickled jobs) under the study
DATASET_JSON = "dataset.json"  # per data set under datasets/<name>/: classes, sizes, input shape
SAMPLES_PNG = "samples.png"  # per data set: training images per class
ACCURACY_PNG = "accuracy.png"  # per data set: test top-1 against epoch and time
COMPARISON_CSV = "comparison.csv"
COMPARISON_MD = "comparison.md"
PAIRS_CSV = "pairs.csv"
PAIRS_BY_SEED_CSV = "pairs_by_seed.csv"
FINDINGS_MD = "findings.md"  # the report's findings in plain text: what `compare` prints when it ends
REPORT_HTML = "report.html"
STUDY_INSIGHT_DIR = "insight"  # CKA between the models of a study: cka-<dataset>-seed<n>-<a>-vs-<b>.csv
TUNING_DIR = "tuning"  # a study's tuning phase (--tune): trial-<k>/runs/<run>/ per trial, and Optuna's journal
TUNING_JOURNAL = "tuning/journal.log"  # Optuna's JournalStorage: every trial's settings and score, shared by workers
TUNING_FIGURES_DIR = "tuning/figures"  # the report's figures of how each model was tuned

# In a run folder
CONFIG_JSON = "config.json"  # the resolved TrainConfig, written when the run starts
PREPROCESSING_JSON = "preprocessing.json"  # classes, input shape, mean/std, resize, padding; written at the start
CHECKPOINTS_DIR = "checkpoints"
SUMMARY = "summary.json"
METRICS_CSV = "metrics.csv"  # one row per finished epoch
LOG_TXT = "log.txt"  # the study's log format, line for line
CONFUSION_CSV = "confusion_matrix.csv"
PER_CLASS_CSV = "per_class.csv"
EVALUATION_JSON = "evaluation.json"  # `cnnbench evaluate`
PREDICTIONS = "predictions.npz"
MISCLASSIFIED_CSV = "misclassified.csv"
ROBUSTNESS_JSON = "robustness.json"
TEST_FILES = "test_files.txt"  # the images held out for testing, where cnnbench split an image folder itself
ROBUSTNESS_CSV = "robustness.csv"
ROBUSTNESS_NPZ = "robustness.npz"  # per test image of every cell: right or wrong (paired tests between models)
TRANSFER_CSV = "transfer.csv"  # a study's transfer attacks between its models (analysis/robustness/transfer.py)
TRANSFER_JSON = "transfer.json"
DYNAMICS_CSV = "dynamics.csv"  # per-layer weight/gradient/update norms while training
DEAD_UNITS_CSV = "dead_units.csv"  # per-stage share of ReLU channels silent on a fixed probe batch, per epoch
FILTERS_NPZ = "filters.npz"  # the first convolution's weights at epoch 0, 1, ...
INIT_WEIGHTS = "checkpoints/init.pt"  # the weights before the first step (distance from init, landscape line)
INSIGHT_DIR = "insight"  # `cnnbench insight` figures and tables
INSIGHT_JSON = "insight/insight.json"
RUN_FIGURES_DIR = "figures"  # a lone run's report figures (`cnnbench report RUN_DIR`)
CURVES_PNG = "curves.png"  # the report's figures drawn into a run folder
CONFUSION_PNG = "confusion.png"
MISCLASSIFIED_PNG = "misclassified.png"
ROBUSTNESS_PNG = "robustness.png"


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "data"


def pretrained_label(pretrained: str) -> str:
    """A short name for where pretrained weights came from: 'imagenet', or a file's or run folder's name."""
    return Path(pretrained).name or pretrained


def run_dir_name(model: str, dataset: str, seed: int, pretrained: str | None = None) -> str:
    start = f"-from-{safe_name(pretrained_label(pretrained))}" if pretrained else ""
    return f"{model}{start}-{safe_name(dataset)}-seed{seed}"


def run_dir_for(out: Path, cfg) -> Path:
    """A study's folder for one run (``cfg``: a TrainConfig or anything with model, dataset, seed and, for a
    fine-tuned run, pretrained)."""
    return Path(out) / RUNS_DIR / run_dir_name(cfg.model, cfg.dataset, cfg.seed, getattr(cfg, "pretrained", None))


def run_dirs_of(study_dir: Path) -> list[Path]:
    """A study's run folders (those holding a config.json), sorted by name."""
    runs = Path(study_dir) / RUNS_DIR
    return sorted(d for d in runs.iterdir() if (d / CONFIG_JSON).exists()) if runs.is_dir() else []


def study_cka_csv(study_dir: Path, dataset: str, seed: int, model_a: str, model_b: str) -> Path:
    return Path(study_dir) / STUDY_INSIGHT_DIR / f"cka-{safe_name(dataset)}-seed{seed}-{model_a}-vs-{model_b}.csv"


def trial_dir(study_dir: Path, number: int) -> Path:
    """The folder of a tuning phase's trial ``number`` (one run per model and data set under its runs/)."""
    return Path(study_dir) / TUNING_DIR / f"trial-{number}"


def trial_dirs_of(study_dir: Path) -> list[Path]:
    """A study's trial folders, in trial order."""
    tuning = Path(study_dir) / TUNING_DIR
    found = [d for d in tuning.glob("trial-*") if d.is_dir() and d.name[6:].isdigit()] if tuning.is_dir() else []
    return sorted(found, key=lambda d: int(d.name[6:]))


def dataset_dir_for(out: Path, dataset: str) -> Path:
    return Path(out) / "datasets" / safe_name(dataset)
