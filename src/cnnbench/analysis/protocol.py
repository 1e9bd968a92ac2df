"""What a study declared before it trained, and which of its results are therefore confirmatory.

A verdict is confirmatory only when it is the declared comparison, on the declared metric, over exactly the declared
seeds, and no seed was added after results existed. Everything else is exploratory and labelled so: other pairs,
other metrics, per-corruption results, and seeds added after looking (optional stopping: adding seeds until a test
turns significant inflates its false-positive rate well above alpha, Armitage et al. 1969). cnnbench does not try to
rescue such a verdict with alpha spending: a spending function has to be chosen before the first look, and a study
that grew its seeds after looking chose none; the honest label is "exploratory", and the remedy is a new protocol
whose seeds are all trained afterwards.

Several comparisons at once are corrected by Holm's step-down method (Holm 1979), which controls the family-wise
error rate at alpha without assuming the tests independent.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import combinations

from ..errors import ConfigError

METRIC = "test_top1"
ALPHA = 0.05


@dataclass(frozen=True)
class Protocol:
    seeds: tuple[int, ...]  # the seeds every declared verdict rests on
    comparisons: tuple[tuple[str, str], ...]  # pairs of model names; (m, m): m fine-tuned against m from scratch
    metric: str = METRIC
    test: str = "paired t over seeds (one seed: exact McNemar on the test images)"
    alpha: float = ALPHA
    correction: str = "holm"
    declared_at: str = ""  # UTC, ISO 8601: when the study recorded it
    before_results: bool = True  # recorded before any run of the study had finished
    seed_history: tuple[dict, ...] = field(default_factory=tuple)  # later seed lists: {"seeds", "at", "after_results"}
    # the tuning phase declared with the study (space, trials per model, sampler, seed, score, rule); None: one shared
    # recipe, not tuned per model
    tuning: dict | None = None
    # why the run folders contradict before_results (runs older than the declaration); derived, never saved
    doubt: str = ""

    def to_dict(self) -> dict:
        return {
            "declared_at": self.declared_at,
            "seeds": list(self.seeds),
            "comparisons": [list(c) for c in self.comparisons],
            "metric": self.metric,
            "test": self.test,
            "alpha": self.alpha,
            "correction": self.correction,
            "before_results": self.before_results,
            "seed_history": list(self.seed_history),
            **({"tuning": self.tuning} if self.tuning is not None else {}),
        }

    @classmethod
    def from_dict(cls, d: dict, where: str = "study.json") -> Protocol:
        """A saved protocol, checked like any input: it may have been written by hand."""

        def bad(what: str) -> ConfigError:
            return ConfigError(
                f"The protocol in {where} is malformed: {what}. `cnnbench compare` writes it; restore that file, or "
                "remove its protocol (the study's verdicts are then exploratory)."
            )

        if not isinstance(d, dict):
            raise bad("it is not a mapping")
        seeds, pairs = d.get("seeds"), d.get("comparisons", [])
        if not isinstance(seeds, list) or not seeds or not all(type(s) is int for s in seeds):
            raise bad(f"seeds must be a list of whole numbers (got {seeds!r})")
        if not isinstance(pairs, list) or not all(
            isinstance(c, list) and len(c) == 2 and all(isinstance(m, str) for m in c) for c in pairs
        ):
            raise bad("comparisons must be a list of [model, model] pairs")
        alpha = d.get("alpha", ALPHA)
        if type(alpha) not in (int, float) or not 0 < alpha < 1:
            raise bad(f"alpha must be a number between 0 and 1 (got {alpha!r})")
        for key, kind in (("declared_at", str), ("before_results", bool), ("seed_history", list)):
            if key in d and not isinstance(d[key], kind):
                raise bad(f"{key} must be a {kind.__name__} (got {d[key]!r})")
        if d.get("tuning") is not None and not isinstance(d["tuning"], dict):
            raise bad("tuning must be a mapping")
        return cls(
            tuple(seeds),
            tuple(tuple(c) for c in pairs),
            d.get("metric", METRIC),
            d.get("test", cls.test),
            float(alpha),
            d.get("correction", "holm"),
            d.get("declared_at", ""),
            d.get("before_results", True),
            tuple(d.get("seed_history", ())),
            d.get("tuning"),
        )

    @property
    def declared_seeds(self) -> tuple[int, ...]:
        """The seeds the verdicts rest on: the first declaration's, or the last list set before any result existed
        (a grid changed before anything could be looked at is still a declaration, not a look)."""
        seeds = self.seeds
        for entry in self.seed_history:
            if entry.get("after_results"):
                break
            seeds = tuple(entry["seeds"])
        return seeds

    @property
    def seeds_added_after_results(self) -> tuple[int, ...]:
        """Seeds that joined the study after some of its runs had finished (a look at results was possible)."""
        added: set[int] = set()
        for entry in self.seed_history:
            if entry.get("after_results"):
                added |= set(entry["seeds"]) - set(self.declared_seeds)
        return tuple(sorted(added))

    def declares(self, model_a: str, model_b: str) -> bool:
        return (model_a, model_b) in self.comparisons or (model_b, model_a) in self.comparisons


def now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def declare(models, seeds, with_scratch: bool = False, alpha: float = ALPHA, tuning: dict | None = None) -> Protocol:
    """The protocol a study declares by its grid: every pair of its models (and each model fine-tuned against
    itself from scratch, with --with-scratch), top-1 on the test set, over its seeds; with ``tuning``, each model
    tuned by that declared search before its test seeds train."""
    pairs = tuple(combinations(models, 2)) + (tuple((m, m) for m in models) if with_scratch else ())
    return Protocol(tuple(seeds), pairs, alpha=alpha, declared_at=now(), tuning=tuning)


def updated(
    previous: Protocol | None, models, seeds, with_scratch: bool, results_exist: bool, tuning: dict | None = None
) -> Protocol:
    """The protocol after this invocation: declared now if there was none (the first time, or a study from before
    protocols: then it is declared now and says whether results already existed); otherwise the first declaration
    stands, and a changed seed list is added to its history with whether results existed at that time. A tuning
    phase is part of the declaration: it cannot be added, dropped or changed afterwards."""
    if previous is None:  # results existing already: an older study, trained before anything was declared
        return dataclasses.replace(
            declare(models, seeds, with_scratch, tuning=tuning), before_results=not results_exist
        )
    if previous.tuning != tuning:
        said = f"with tuning {previous.tuning['space']!r}" if previous.tuning else "without tuning"
        asked = f"tuning {tuning['space']!r}" if tuning else "no tuning"
        raise ConfigError(
            f"This study was declared {said}, and this command asks for {asked} (or other tuning settings). The "
            "tuning is part of the protocol declared before training: run the study with its own settings, or "
            "write the new one to another --out folder."
        )
    if not results_exist:  # nothing could be looked at yet: the declared comparisons follow the grid
        previous = dataclasses.replace(previous, comparisons=declare(models, seeds, with_scratch).comparisons)
    if tuple(seeds) == previous.seeds or (
        previous.seed_history and tuple(previous.seed_history[-1]["seeds"]) == tuple(seeds)
    ):
        return previous
    entry = {"seeds": list(seeds), "at": now(), "after_results": bool(results_exist)}
    return dataclasses.replace(previous, seed_history=(*previous.seed_history, entry))


def declared_time(protocol: Protocol) -> datetime | None:
    try:
        at = datetime.fromisoformat(protocol.declared_at)
    except (TypeError, ValueError):
        return None
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


def checked(protocol: Protocol, run_starts: dict[str, datetime | None]) -> Protocol:
    """The protocol as the run folders show it: whether it came before the results is derived from when each run
    began (``run_starts``: run name -> the earliest instant its folder shows), never taken from its own fields. A
    protocol without a readable declaration time cannot be placed before anything."""
    at = declared_time(protocol)
    if at is None:
        doubt = f"the protocol has no readable declaration time (declared_at {protocol.declared_at!r})"
        return dataclasses.replace(protocol, before_results=False, doubt=doubt)
    early = sorted(name for name, start in run_starts.items() if start is not None and start < at)
    if early:
        shown = ", ".join(early[:3]) + (f" and {len(early) - 3} more" if len(early) > 3 else "")
        doubt = f"{len(early)} run(s) began before the protocol was declared ({shown})"
        return dataclasses.replace(protocol, before_results=False, doubt=doubt)
    return protocol


def status(protocol: Protocol | None, model_a: str, model_b: str, seeds, metric: str = METRIC) -> tuple[str, str]:
    """("confirmatory", "") or ("exploratory", why) for a verdict on a pair over ``seeds``."""
    if protocol is None:
        return "exploratory", "no protocol was declared before training"
    if not protocol.before_results:
        return "exploratory", protocol.doubt or "the protocol was recorded after results existed"
    if not protocol.declares(model_a, model_b):
        return "exploratory", "not a declared comparison"
    if metric != protocol.metric:
        return "exploratory", f"the declared metric is {protocol.metric}"
    late = sorted(set(seeds) & set(protocol.seeds_added_after_results))
    if late:
        return "exploratory", f"seed {', '.join(map(str, late))} added after results existed (sequential testing)"
    if tuple(sorted(seeds)) != tuple(sorted(protocol.declared_seeds)):
        missing = sorted(set(protocol.declared_seeds) - set(seeds))
        if missing:
            return "exploratory", f"declared seed {', '.join(map(str, missing))} not trained yet"
        return "exploratory", "seeds other than the declared ones"
    return "confirmatory", ""


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (None stays None and does not count in the family)."""
    known = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    m = len(known)
    adjusted: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(known):
        running = max(running, min(1.0, (m - rank) * p))  # monotone: never below an earlier, smaller p's
        adjusted[i] = running
    return adjusted
