"""A study's tuning phase: every model gets the same search, scored on validation only, before any test seed trains.

One Optuna study per (data set, model), all kept in one JournalStorage file in the study folder (a file every worker
can share, on a shared disk under Slurm too), so a killed tuning phase resumes where it stopped. Trial k of every model
runs as one round of cells through the study's launcher, under ``tuning/trial-k/``: the models train side by side and
a round is told to Optuna before the next is asked for. The sampler is re-seeded for each trial number from the tuning
seed, so the suggestions depend only on the seed and the finished trials: a resumed phase asks what an uninterrupted
one would have, and every model starts from the same random points (TPE's start-up trials; Bergstra et al. 2011).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ..config import TrainConfig, validate
from ..errors import ConfigError, TrainingError
from ..fileio import optuna_journal, read_json
from ..launch.launchers import Batch, LaunchConfig, launch_cells
from ..layout import EVENTS_JSONL, SUMMARY, TUNING_JOURNAL, run_dir_for, trial_dir
from .space import SearchSpace

SCORE = "val_top1"  # what a trial is scored by: validation top-1 at its last epoch
RULE = "per model and data set, the trial with the highest validation top-1 at its last epoch (a tie: the earlier one)"


@dataclass(frozen=True)
class TuningSpec:
    space: SearchSpace
    trials: int  # per model and data set: the budget every model gets
    seed: int  # the seed every trial trains with; never one of the test seeds

    @property
    def sampler(self) -> str:
        return "grid" if self.space.is_grid else "tpe"

    def to_dict(self) -> dict:
        """What the protocol declares about the tuning phase, before its first trial."""
        return {
            "space": self.space.text(),
            "trials_per_model": self.trials,
            "sampler": self.sampler,
            "seed": self.seed,
            "score": f"{SCORE} at the last epoch of a trial (the test split is never loaded into a trial)",
            "rule": RULE,
        }


def default_seed(test_seeds) -> int:
    """The smallest seed that is not a test seed."""
    return next(s for s in range(len(test_seeds) + 1) if s not in set(test_seeds))


def check_tuning(tuning: TuningSpec, test_seeds, configs: list[TrainConfig]) -> None:
    """Refuse a tuning phase that could not be fair or could touch the test split, before anything trains."""
    if tuning.trials < 1:
        raise ConfigError(f"--trials must be a positive number of trials per model (got {tuning.trials}).")
    if tuning.space.is_grid and tuning.trials > tuning.space.grid_size():
        raise ConfigError(
            f"--tune {tuning.space.text()} is a grid of {tuning.space.grid_size()} points, fewer than --trials "
            f"{tuning.trials}: use --trials {tuning.space.grid_size()} or fewer, or give a range (low:high)."
        )
    if tuning.seed in set(test_seeds):
        raise ConfigError(
            f"The tuning seed {tuning.seed} is also a test seed: tuning must not train on a seed that later decides "
            f"the verdict. Choose --tune-seed outside --seeds (for example {default_seed(test_seeds)})."
        )
    if any(not c.val_split for c in configs):
        raise ConfigError(
            "--tune scores every trial on validation images, and there are none: add --val-split N (for example "
            "--val-split 5000 on CIFAR-10, or a tenth of the training images), so that trials never see the test split."
        )


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError("--tune needs Optuna: pip install optuna (a dependency of cnnbench since --tune).") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _sampler(optuna, tuning: TuningSpec, number: int):
    seed = tuning.seed * 100_003 + number  # one stream per trial number: the same after a resume, the same per model
    if tuning.sampler == "grid":
        return optuna.samplers.GridSampler({p.name: list(p.choices) for p in tuning.space.params}, seed=seed)
    # A third of the budget at random, then TPE (Optuna's default of 10 start-up trials would be all of a small one)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(1, math.ceil(tuning.trials / 3)))


def open_studies(study_dir: Path, keys: list[tuple[str, str]], create: bool = True) -> dict:
    """The Optuna study of each (data set, model), from the study folder's journal."""
    optuna = _optuna()
    storage = optuna_journal(Path(study_dir) / TUNING_JOURNAL)
    if create:
        return {
            (d, m): optuna.create_study(
                study_name=f"{d}/{m}", storage=storage, direction="maximize", load_if_exists=True
            )
            for d, m in keys
        }
    return {(d, m): optuna.load_study(study_name=f"{d}/{m}", storage=storage) for d, m in keys}


def _params_of_trial(optuna, study, number: int, tuning: TuningSpec) -> dict | None:
    """Trial ``number``'s settings: None if it finished, its own if it was asked before a kill, else new ones."""
    trials = study.get_trials(deepcopy=False)
    if number < len(trials):
        trial = trials[number]
        return None if trial.state == optuna.trial.TrialState.COMPLETE else dict(trial.params)
    if number > len(trials):
        raise ConfigError(f"The tuning journal of {study.study_name} lacks trials before {number}: it was edited.")
    study.sampler = _sampler(optuna, tuning, number)
    trial = study.ask(tuning.space.distributions())
    return dict(trial.params)


def trial_config(base: TrainConfig, params: dict) -> TrainConfig:
    return validate(base.replace(**params, trial=True))


def run_tuning(
    study_dir: Path,
    bases: dict[tuple[str, str], TrainConfig],
    tuning: TuningSpec,
    launch: LaunchConfig,
    log: Callable[[str], None],
    data_for: Callable[[TrainConfig], object],
) -> dict[str, dict[str, dict]]:
    """Run ``tuning.trials`` trials for every (data set, model) of ``bases`` (their configs at the tuning seed) and
    return the chosen settings: data set -> model -> {"params", "trial", "val_top1"}. Finished trials are kept."""
    optuna = _optuna()
    studies = open_studies(study_dir, list(bases))
    launch = replace(launch, wait=True)  # the next trial needs this one's scores: follow Slurm jobs to their end
    for number in range(tuning.trials):
        todo = {}
        for key, study in studies.items():
            params = _params_of_trial(optuna, study, number, tuning)
            if params is not None:
                todo[key] = trial_config(bases[key], params)
        if not todo:
            continue
        log(
            f"tuning, trial {number + 1} of {tuning.trials}: "
            + "; ".join(f"{m} on {d}: {settings_text(cfg, tuning.space)}" for (d, m), cfg in todo.items())
        )
        folder = trial_dir(study_dir, number)
        # every trial is waited for (Slurm too): the next trial's settings depend on this one's score
        trial_launch = dataclasses.replace(launch, wait=True)
        failed = launch_cells(Batch(folder, list(todo.values()), log, trial_launch, data_for=data_for)).failed
        if failed:
            raise TrainingError(
                f"Tuning trial {number} failed for {', '.join(failed)} (reasons in {folder / EVENTS_JSONL}). "
                "Finished trials are kept: run the same command again to retry it."
            )
        for key, cfg in todo.items():
            studies[key].tell(number, float(read_json(run_dir_for(folder, cfg) / SUMMARY)[SCORE]))
    return chosen_settings(studies)


def settings_text(cfg: TrainConfig, space: SearchSpace) -> str:
    return ", ".join(
        f"{p.name} {getattr(cfg, p.name):.4g}"
        if isinstance(getattr(cfg, p.name), float)
        else f"{p.name} {getattr(cfg, p.name)}"
        for p in space.params
    )


def chosen_settings(studies: dict) -> dict[str, dict[str, dict]]:
    """The selection rule (RULE) applied to every study's finished trials."""
    optuna = _optuna()
    chosen: dict[str, dict[str, dict]] = {}
    for (dataset, model), study in studies.items():
        done = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
        best = max(done, key=lambda t: (t.value, -t.number))
        chosen.setdefault(dataset, {})[model] = {"params": dict(best.params), "trial": best.number, SCORE: best.value}
    return chosen
