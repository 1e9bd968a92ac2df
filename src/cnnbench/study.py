"""A study: a grid of runs (models x data sets x seeds) in one folder, resumable, ending in a report."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .analysis import protocol
from .analysis.protocol import Protocol
from .config import TrainConfig, config_differences, config_from_dict, refuse_internal_keys, validate
from .data.loader import load_dataset
from .engine.callbacks import Callback
from .engine.train import check_output_folder
from .errors import ConfigError, RunsFailedError
from .fileio import read_csv, read_json, write_json
from .launch import events
from .launch.cell import finished
from .launch.launchers import Batch, LaunchConfig, check_launch, launch_cells
from .layout import (
    CONFIG_JSON,
    DATASET_JSON,
    EVENTS_JSONL,
    METRICS_CSV,
    ROBUSTNESS_JSON,
    SAMPLES_PNG,
    STUDY_SPEC,
    dataset_dir_for,
    run_dir_for,
    run_dirs_of,
    trial_dirs_of,
)
from .tune import TuningSpec, check_tuning, run_tuning
from .tune.search import trial_config


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    models: tuple[str, ...]
    datasets: tuple[str, ...]
    per_dataset: dict[str, dict]  # TrainConfig overrides for one data set (epochs at least)
    train: dict = field(default_factory=dict)  # TrainConfig overrides for every run


PRESETS = {
    "demo": Preset(
        "demo",
        "VGG16-BN against ResNet18 (small-image variants at a quarter of their width) on the MNIST subset shipped "
        "with cnnbench: runs offline in about a minute on 2 CPU cores (--width 1 for the published widths)",
        # 4 epochs at batch 64: at batch 128 the 117 steps of 3 epochs leave VGG16 near chance (measured: 30% top-1).
        # A quarter of the width (1/16 of the computation) fits a first look into 3 minutes on 2 fp32 AVX2 cores: full
        # width took 5 min 24 s on 2 AVX-512 BF16 cores; about 11 of training estimated on AVX2 (docs/BENCHMARKS.md).
        ("vgg16_bn", "resnet18"),
        ("mnist_demo",),
        {"mnist_demo": {"epochs": 4}},
        {"variant": "small", "batch_size": 64, "lr": 0.05, "width": 0.25},
    ),
    "paper": Preset(
        "paper",
        "The study's setup as far as it is known: VGG16 with the FC-4096 head against ResNet18 with the "
        "ImageNet stem (paper variants), MNIST for 5 epochs and CIFAR-10 for 25",
        ("vgg16", "resnet18"),
        ("mnist", "cifar10"),
        {"mnist": {"epochs": 5}, "cifar10": {"epochs": 25}},
        {"variant": "paper"},
    ),
    "modern": Preset(
        "modern",
        "VGG16-BN against ResNet18, small-image variants, cnnbench's default recipe (one-cycle SGD, label "
        "smoothing, bf16 where fast): MNIST for 2 epochs at batch 128; CIFAR-10 for 8 epochs at batch 64 with "
        "crops shifted by up to 2 pixels and label smoothing 0.2",
        # CIFAR-10: 8 epochs leave VGG16-BN under-fitted, so the crop shifts 2 pixels, not 4 (85.92% -> 86.26%
        # top-1, one seed), and label smoothing 0.2 (-> 86.76%); batch 64 or 128 made no difference. docs/RESULTS.md.
        # precise_bn 0: the published runs (studies/modern*) predate precise batch norm, and the preset reproduces
        # them (a choice about reproduction, not tuned: recomputing their final statistics moved test top-1 by
        # -0.19 to 0.00 points, docs/precise_bn_effect.json).
        ("vgg16_bn", "resnet18"),
        ("mnist", "cifar10"),
        {
            "mnist": {"epochs": 2},
            "cifar10": {"epochs": 8, "batch_size": 64, "lr": 0.05, "crop_padding": 2, "label_smoothing": 0.2},
        },
        {"variant": "small", "precise_bn": 0},
    ),
    "fast": Preset(
        "fast",
        "VGG16-BN against ResNet18 (small-image variants) on CIFAR-10 with a recipe for large batches on a GPU: "
        "batch 512 at peak learning rate 0.4, label smoothing 0.2, crops shifted by up to 4 pixels, flips, 8-pixel "
        "cutout, a moving average of the weights (decay 0.99), precise batch norm; 40 epochs; flip test-time "
        "augmentation reported as its own column",
        # lr 0.4 (the linear scaling rule from 0.1 at batch 128) beat 0.2 and 0.8 on validation (--val-split 5000, one
        # seed, 40 epochs, an H200: `benchmarks/gpu_check.sh fast-recipe`); 40 epochs were sized to a minute of
        # training on an H100-class GPU. Only the learning rate was tuned. docs/RESULTS.md, "The fast recipe on a GPU".
        ("vgg16_bn", "resnet18"),
        ("cifar10",),
        {"cifar10": {"epochs": 40}},
        {
            "variant": "small",
            "batch_size": 512,
            "lr": 0.4,
            "label_smoothing": 0.2,
            "crop_padding": 4,
            "cutout": 8,
            "ema": 0.99,
            "precise_bn": 4096,
        },
    ),
}


@dataclass(frozen=True)
class StudySpec:
    models: tuple[str, ...]
    datasets: tuple[str, ...]
    seeds: tuple[int, ...] = (0,)
    base: TrainConfig = TrainConfig()  # every field but model/dataset/seed (and those set per data set)
    per_dataset: dict[str, dict] = field(default_factory=dict)  # data set -> TrainConfig overrides, over base
    preset: str | None = None
    with_scratch: bool = False  # with base.pretrained: every model also trained from scratch, as a row of its own
    tuning: TuningSpec | None = None  # --tune: each model tuned by the same search on validation before its seeds
    tuned: dict[str, dict[str, dict]] = field(default_factory=dict)  # data set -> model -> the settings tuning chose

    def runs(self) -> list[TrainConfig]:
        starts = [{"pretrained": None, "freeze_backbone": False}, {}] if self.with_scratch else [{}]
        return [
            validate(
                self.base.replace(
                    model=m,
                    dataset=d,
                    seed=s,
                    **{**self.per_dataset.get(d, {}), **self.tuned.get(d, {}).get(m, {}), **start},
                )
            )
            for d in self.datasets
            for m in self.models
            for start in starts
            for s in self.seeds
        ]

    def trial_bases(self) -> dict[tuple[str, str], TrainConfig]:
        """Each (data set, model)'s settings before tuning, at the tuning seed: what its trials start from."""
        seed = self.tuning.seed if self.tuning else 0
        return {
            (d, m): validate(self.base.replace(model=m, dataset=d, seed=seed, **self.per_dataset.get(d, {})))
            for d in self.datasets
            for m in self.models
        }

    def to_dict(self) -> dict:
        return {
            "models": list(self.models),
            "datasets": list(self.datasets),
            "seeds": list(self.seeds),
            "per_dataset": self.per_dataset,
            "preset": self.preset,
            "with_scratch": self.with_scratch,
            "base": self.base.to_dict(),
            **({"tuned": self.tuned} if self.tuning else {}),
        }


def resolve_study(
    preset: str | None = None,
    models: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    seeds: Sequence[int] = (0,),
    file_options: dict | None = None,
    flag_options: dict | None = None,
    where_file: str = "The config file",
    with_scratch: bool = False,
    tuning: TuningSpec | None = None,
) -> StudySpec:
    """The one path from a preset, a config file's options and command-line options to a study.

    Without a preset, models or data sets: the demo preset. Options set in the file or by flags win over the
    preset's per-data-set settings; flags win over the file."""
    from .data.sources import check_dataset_name

    file_options, flag_options = dict(file_options or {}), dict(flag_options or {})
    if preset is None and not models and not datasets:
        preset = "demo"
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"Unknown preset {preset!r}: choose one of {', '.join(PRESETS)}.")
    p = PRESETS[preset] if preset else None
    refuse_internal_keys(file_options, where_file)
    base = config_from_dict(file_options, TrainConfig(**p.train) if p else TrainConfig(), where=where_file)
    base = config_from_dict(flag_options, base, where="The command line")
    for d in datasets or ():  # unknown names fail before any training
        check_dataset_name(d)
    chosen = set(file_options) | set(flag_options)
    per_dataset = {d: {k: v for k, v in o.items() if k not in chosen} for d, o in (p.per_dataset.items() if p else ())}
    fallback = p or PRESETS["demo"]  # --models alone runs on the demo's data, --datasets alone the demo's models
    if with_scratch and base.pretrained is None:
        raise ConfigError(
            "--with-scratch adds runs from scratch beside fine-tuned ones, but no --pretrained weights "
            "were given: pass --pretrained imagenet or --pretrained PATH, or drop --with-scratch."
        )
    spec = StudySpec(
        tuple(models or fallback.models),
        tuple(datasets or fallback.datasets),
        tuple(seeds),
        base,
        per_dataset,
        preset,
        with_scratch,
        tuning,
    )
    if tuning is not None:
        check_tuning(tuning, spec.seeds, list(spec.trial_bases().values()))
    return spec


def _write_dataset_overview(out: Path, data) -> None:
    from .report.plots import class_samples_grid

    folder = dataset_dir_for(out, data.name)
    write_json(
        folder / DATASET_JSON,
        {
            "name": data.name,
            "source": data.source,
            "classes": data.classes,
            "train_images": len(data.train_y),
            "test_images": len(data.test_y),
            "input_shape": list(data.train_x.shape[1:]),
            "natural": data.natural,
            **({"test_files": list(data.test_files)} if data.test_files else {}),
        },
    )
    class_samples_grid(
        data.train_x.cpu().numpy(),
        data.train_y.cpu().numpy(),
        data.classes,
        folder / SAMPLES_PNG,
        title=f"{data.name}: training images per class",
    )


def _check_distinct_folders(spec: StudySpec) -> None:
    """Two data sets whose names flatten to one folder name would share run folders: the second would be taken
    for finished and left out of the report. Refuse, naming both."""
    seen: dict[str, str] = {}
    for dataset in spec.datasets:
        folder = dataset_dir_for(Path("."), dataset).name
        if folder in seen and seen[folder] != dataset:
            raise ConfigError(
                f"The data sets {seen[folder]!r} and {dataset!r} would share the run folders named after "
                f"{folder!r}. Study them in two --out folders, or rename one of the folders (or tars)."
            )
        seen[folder] = dataset


def _check_finished_runs_match(out: Path, configs: Sequence[TrainConfig]) -> None:
    """A finished run trained with other settings would be skipped and mixed into the comparison: refuse."""
    for cfg in configs:
        run_dir = run_dir_for(out, cfg)
        if finished(run_dir) and (run_dir / CONFIG_JSON).exists():
            changes = config_differences(read_json(run_dir / CONFIG_JSON), cfg)
            if changes:
                raise ConfigError(
                    f"{run_dir} is a finished run with other settings than this study asks for ({changes}), so the "
                    "comparison would mix recipes. Move that folder out of the study (it is kept as it is), or "
                    "write this study to another --out folder."
                )


def study_protocol(out: Path, spec: StudySpec) -> Protocol:
    """The study's protocol, declared the first time it runs (before any training); later runs keep that
    declaration and record a changed seed list, and whether results existed when it changed."""
    saved = read_json(out / STUDY_SPEC) if (out / STUDY_SPEC).exists() else {}
    previous = Protocol.from_dict(saved["protocol"]) if isinstance(saved.get("protocol"), dict) else None
    results_exist = any(finished(d) for d in run_dirs_of(out))
    tuning = spec.tuning.to_dict() if spec.tuning else None
    return protocol.updated(previous, spec.models, spec.seeds, spec.with_scratch, results_exist, tuning)


def _tune(out: Path, spec: StudySpec, launch: LaunchConfig, log: Callable[[str], None]) -> tuple[StudySpec, dict]:
    """The tuning phase (resumed where it stopped): the study with each model's chosen settings, and what was chosen
    (data set -> model -> params, trial, val_top1)."""
    bases = spec.trial_bases()
    trial_data: dict[tuple, object] = {}

    def data_for(cfg: TrainConfig):  # one decode per data set and options (a trial's: validation as its test split)
        key = (cfg.dataset, cfg.data_options())
        if key not in trial_data:
            trial_data[key] = load_dataset(cfg.dataset, cfg.data_dir, cfg.data_options())
        return trial_data[key]

    log(
        f"tuning: {spec.tuning.trials} trial(s) per model of {spec.tuning.space.text()} ({spec.tuning.sampler}, "
        f"seed {spec.tuning.seed}), scored on {bases[next(iter(bases))].val_split} validation images"
    )
    if launch.launcher == "inline":  # trials not yet told to Optuna, then every test-seed run (at the untuned epochs)
        done = _finished_trials(out, bases)
        trials = [c for key, c in bases.items() for _ in range(spec.tuning.trials - done[key])]
        confirm = [c for c in spec.runs() if not finished(run_dir_for(out, c))]
        _say_estimate(confirm, {c.dataset: data_for(trial_config(c, {})) for c in bases.values()}, log, trials)
    chosen = run_tuning(out, bases, spec.tuning, launch, log, data_for)
    for dataset, by_model in chosen.items():
        for model, c in by_model.items():
            log(f"tuned {model} on {dataset}: {c['params']} (trial {c['trial']}, validation top-1 {c['val_top1']:.2%})")
    tuned = {d: {m: c["params"] for m, c in ms.items()} for d, ms in chosen.items()}
    return dataclasses.replace(spec, tuned=tuned), chosen


def _finished_trials(out: Path, bases: dict) -> dict:
    """Trial runs already finished per (data set, model), from the trial folders."""
    return {key: sum(finished(run_dir_for(t, cfg)) for t in trial_dirs_of(out)) for key, cfg in bases.items()}


def _say_estimate(
    todo: list[TrainConfig], datasets: dict, log: Callable[[str], None], trials: list[TrainConfig] = ()
) -> None:
    """The training time ahead, from a few timed steps of each model, before the first run starts (``trials``: a
    tuning phase's trial runs, which come first)."""
    from .engine.runtime import duration_text
    from .launch.estimate import estimate_training_seconds

    try:
        seconds = estimate_training_seconds(todo, datasets)
        tuning = estimate_training_seconds(trials, datasets) if trials else 0.0
    except Exception as e:  # an estimate must never stop a study: the runs report their own errors
        log(f"no time estimate ({type(e).__name__}: {e})")
        return
    first = f"{len(trials)} tuning trial run(s), about {duration_text(tuning)}, then " if trials else ""
    log(
        f"{first}{len(todo)} run(s) to train: about {duration_text(seconds + tuning)} of training steps in all, timed "
        "on a few steps of each model (evaluation and the report come on top; resumed runs need less)"
    )


def _check_still_this_study(out: Path, configs: Sequence[TrainConfig]) -> None:
    """Another `compare` with other settings may have rewritten study.json while this one trained: a report then
    would judge this command's runs by the other's settings. Refuse to write it, saying what happened."""
    try:
        cells = {c["name"]: c["config"] for c in read_json(out / STUDY_SPEC).get("cells", [])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return  # damaged meanwhile: the report says so itself
    for cfg in configs:
        name = run_dir_for(out, cfg).name
        changes = config_differences(cells[name], cfg) if isinstance(cells.get(name), dict) else "not among its runs"
        if changes:
            raise ConfigError(
                f"Another `cnnbench compare` rewrote {out / STUDY_SPEC} with other settings while this one ran "
                f"({name}: {changes}), so no report was written: one study folder holds one study. This command's "
                f"finished runs are kept in {out / 'runs'}; let the other command finish, then run each study in its "
                "own --out folder."
            )


def _robustness_to_measure(run_dir: Path) -> bool:
    """No robustness.json yet, or one measured on weights the run has trained past (measured while it was
    interrupted): measure it (again)."""
    from .report.run_records import stale_measurement

    if not (run_dir / ROBUSTNESS_JSON).exists():
        return True
    try:
        return stale_measurement(read_json(run_dir / ROBUSTNESS_JSON), read_csv(run_dir / METRICS_CSV)) is not None
    except (OSError, ValueError, UnicodeDecodeError):
        return True  # damaged: measured again, whole


def run_study(
    spec: StudySpec,
    out: str | Path,
    callbacks: Callable[[], Sequence[Callback]] = lambda: (),
    log: Callable[[str], None] = print,
    robustness=None,
    insight=None,
    launch: LaunchConfig = LaunchConfig(),
    command: str | None = None,
) -> Path | None:
    """Run every (data set, model, seed) of ``spec`` under ``out`` (finished runs are skipped, interrupted ones
    resumed), then write the report. Returns the report's path (None where a Slurm study was submitted and not
    waited for: its last cell writes the report).

    ``launch``: how the cells reach workers (launch/launchers.py): inline in this process (the default), local
    worker processes, a Slurm array or a Ray cluster. A cell another live worker holds is left to it and waited for.
    ``robustness``: a RobustnessConfig to measure every run under corruptions and attacks once it has trained
    (runs that already hold robustness.json keep it). ``insight``: an InsightConfig to write every run's insight/
    and the CKA between models (rewritten each time: the CKA between models needs every run's features)."""
    from .report.html import build_report

    out = Path(out)
    launch = check_launch(launch)
    check_output_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_distinct_folders(spec)
    record = {**spec.to_dict(), "protocol": study_protocol(out, spec).to_dict()}
    if command:  # what `cnnbench status` offers to retry failed cells with
        record["command"] = command
    if spec.tuning is not None:  # the protocol, tuning included, is on disk before the first trial trains
        write_json(out / STUDY_SPEC, {**record, "cells": [], "tuning": spec.tuning.to_dict()})
        spec, chosen = _tune(out, spec, launch, log)
        record.update(spec.to_dict(), tuning={**spec.tuning.to_dict(), "chosen": chosen})
    configs = spec.runs()
    _check_finished_runs_match(out, configs)
    record["cells"] = [{"name": run_dir_for(out, c).name, "config": c.to_dict()} for c in configs]
    write_json(out / STUDY_SPEC, record)
    datasets = {}
    for dataset in spec.datasets:
        todo = [c for c in configs if c.dataset == dataset]
        overview = dataset_dir_for(out, dataset) / SAMPLES_PNG
        if all(finished(run_dir_for(out, c)) for c in todo) and overview.exists():
            log(f"{dataset}: all {len(todo)} runs already finished")
            continue
        if launch.launcher == "inline" or not overview.exists():
            datasets[dataset] = load_dataset(dataset, todo[0].data_dir, todo[0].data_options())  # one decode
        if not overview.exists():
            _write_dataset_overview(out, datasets[dataset])
    todo = [c for c in configs if not finished(run_dir_for(out, c))]
    for cfg in configs if todo else ():  # (a data set with every run finished was said above)
        if cfg not in todo:
            log(f"{run_dir_for(out, cfg).name}: finished earlier, skipped")
    for cfg in todo:
        events.record(out, run_dir_for(out, cfg).name, "queued", launcher=launch.launcher)
    if launch.launcher == "inline" and todo:
        _say_estimate(todo, datasets, log)
    launched = launch_cells(Batch(out, todo, log, launch, callbacks, lambda cfg: datasets[cfg.dataset]))
    if launched.submitted:  # Slurm jobs submitted, not waited for: the last cell to finish writes the report
        return None
    failed = launched.failed
    if robustness is not None:
        from .analysis.robustness.transfer import measure_runs

        unmeasured = [run_dir_for(out, c) for c in configs]
        unmeasured = [d for d in unmeasured if finished(d) and _robustness_to_measure(d)]
        measure_runs(out, unmeasured, robustness, log=log)
    if insight is not None:
        from .analysis.insight.evaluate import study_insight

        study_insight(out, insight, log=log)
    _check_still_this_study(out, configs)
    any_finished = any(finished(run_dir_for(out, c)) for c in configs)
    report = build_report(out) if any_finished or not failed else None
    if failed:
        covered = f"the report {report} covers the runs that finished" if report else "no run finished, so no report"
        raise RunsFailedError(
            f"{len(failed)} run(s) of the study failed: {', '.join(failed)}. Their reasons are in "
            f"{out / EVENTS_JSONL} and `cnnbench status {out}`; {covered}. Running the same command again retries "
            "only the failed runs."
        )
    return report
