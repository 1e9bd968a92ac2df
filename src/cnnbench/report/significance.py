"""Which differences between models are real: every pair of models on a data set, tested on the saved test
predictions (McNemar's exact test and the interval that inverts it) and over seeds paired by seed number
(t-interval, wins)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np

from ..analysis.protocol import Protocol, holm, status
from ..analysis.statistics import LEVEL, mcnemar_exact, mcnemar_interval, seeds_needed, t_interval, t_test_p
from ..fileio import write_csv
from ..layout import PAIRS_BY_SEED_CSV, PAIRS_CSV
from .tables import Group

PAIRS_COLUMNS = [
    "dataset",
    "measure",
    "model_a",
    "model_b",
    "seeds",
    "top1_a",
    "top1_b",
    "diff_top1",
    "diff_ci_low",
    "diff_ci_high",
    "ci_method",
    # with several seeds: b and c summed over seeds, and the largest of the per-seed exact p-values (every seed's own
    # test has p at most that; not a test of the pooled counts); with one seed, that seed's own test
    "mcnemar_b_summed",
    "mcnemar_c_summed",
    "mcnemar_p_largest",
    "wins_a",
    "diff_std",
    "t_test_p",
    "p",
    "p_adjusted",
    "significant",
    "status",
    "status_reason",
    "seeds_needed",
]
PAIRS_BY_SEED_COLUMNS = [
    "dataset",
    "measure",
    "model_a",
    "model_b",
    "seed",
    "top1_a",
    "top1_b",
    "diff_top1",
    "diff_ci_low",
    "diff_ci_high",
    "mcnemar_b",
    "mcnemar_c",
    "mcnemar_p",
]
ALPHA = 1 - LEVEL
ONE_SEED_CI = "exact, inverting McNemar's test (Clopper-Pearson on the discordant images)"


@dataclass(frozen=True)
class SeedPair:
    seed: int
    top1_a: float
    top1_b: float
    diff: float  # top-1 of A minus top-1 of B, as a fraction
    ci: tuple[float, float] | None  # inverts McNemar's exact test (mcnemar_interval); None without per-example results
    b: int | None  # McNemar's discordant counts: A right and B wrong, A wrong and B right
    c: int | None
    p: float | None


@dataclass(frozen=True)
class Pair:
    """Model A (the more accurate on average over the paired seeds) against model B on one data set."""

    dataset: str
    a: str
    b: str
    per_seed: list[SeedPair] = field(default_factory=list)
    unpaired_seeds: tuple[list[int], list[int]] = ([], [])  # seeds only A ran, seeds only B ran
    model_a: str = ""  # the architectures behind the labels (the same model twice: fine-tuned against scratch)
    model_b: str = ""
    p_adjusted: float | None = None  # Holm within its family: the study's confirmatory pairs, or its exploratory ones
    status: str = "exploratory"  # or "confirmatory": the declared comparison on the declared seeds
    status_reason: str = "not tested against a protocol"
    measure: str = "test_top1"  # or a robustness measure: "corruptions: blur", "pgd eps 8/255", ...

    @property
    def seeds(self) -> list[int]:
        return [s.seed for s in self.per_seed]

    @property
    def diff(self) -> float:
        return float(np.mean([s.diff for s in self.per_seed]))

    @property
    def diff_std(self) -> float | None:
        return float(np.std([s.diff for s in self.per_seed], ddof=1)) if len(self.per_seed) > 1 else None

    @property
    def ci(self) -> tuple[float, float] | None:
        """Over seeds (paired t) with several seeds; with one, the interval that inverts its exact McNemar test (so
        the interval and the verdict's test always agree)."""
        if len(self.per_seed) > 1:
            _, low, high = t_interval([s.diff for s in self.per_seed])
            return low, high
        return self.per_seed[0].ci

    @property
    def ci_method(self) -> str:
        if len(self.per_seed) > 1:
            return f"paired t over {len(self.per_seed)} seeds"
        return "" if self.per_seed[0].ci is None else ONE_SEED_CI

    @property
    def mcnemar(self) -> tuple[int, int, float] | None:
        """b and c summed over seeds, and the largest per-seed p-value (so every seed's own test has p at most
        that): pooling the 2x2 tables of several seeds into one test would treat seeds as test images."""
        if any(s.p is None for s in self.per_seed):
            return None
        return sum(s.b for s in self.per_seed), sum(s.c for s in self.per_seed), max(s.p for s in self.per_seed)

    @property
    def wins_a(self) -> int:
        return sum(s.diff > 0 for s in self.per_seed)

    @property
    def t_p(self) -> float | None:
        return t_test_p([s.diff for s in self.per_seed])

    @property
    def p(self) -> float | None:
        """The pair's test: paired t over seeds with several seeds; exact McNemar on the test images with one."""
        if len(self.per_seed) > 1:
            return self.t_p
        m = self.mcnemar
        return None if m is None else m[2]

    @property
    def significant(self) -> bool | None:
        """The test's p, Holm-adjusted over the study's pairs, below alpha (0.05)."""
        p = self.p_adjusted if self.p_adjusted is not None else self.p
        return None if p is None else p < ALPHA

    @property
    def one_seed(self) -> bool:
        return len(self.per_seed) == 1

    @property
    def seeds_needed(self) -> int | None:
        return None if self.diff_std is None else seeds_needed(self.diff, self.diff_std)

    def row(self) -> dict:
        m, ci = self.mcnemar, self.ci
        return {
            "dataset": self.dataset,
            "measure": self.measure,
            "model_a": self.a,
            "model_b": self.b,
            "seeds": " ".join(map(str, self.seeds)),
            "top1_a": float(np.mean([s.top1_a for s in self.per_seed])),
            "top1_b": float(np.mean([s.top1_b for s in self.per_seed])),
            "diff_top1": self.diff,
            "diff_ci_low": ci[0] if ci else None,
            "diff_ci_high": ci[1] if ci else None,
            "ci_method": self.ci_method,
            "mcnemar_b_summed": m[0] if m else None,
            "mcnemar_c_summed": m[1] if m else None,
            "mcnemar_p_largest": m[2] if m else None,
            "wins_a": self.wins_a,
            "diff_std": self.diff_std,
            "t_test_p": self.t_p,
            "p": self.p,
            "p_adjusted": self.p_adjusted,
            "significant": self.significant,
            "status": self.status,
            "status_reason": self.status_reason,
            "seeds_needed": self.seeds_needed,
        }


def _seed_pair(seed: int, run_a, run_b) -> SeedPair:
    top1_a, top1_b = float(run_a.summary["test_top1"]), float(run_b.summary["test_top1"])
    ca, cb = run_a.test_correct, run_b.test_correct
    if ca is None or cb is None or ca.shape != cb.shape:
        return SeedPair(seed, top1_a, top1_b, top1_a - top1_b, None, None, None, None)
    m = mcnemar_exact(ca, cb)
    return SeedPair(seed, top1_a, top1_b, (m.b - m.c) / len(ca), mcnemar_interval(m.b, m.c, len(ca)), m.b, m.c, m.p)


def _negated(ci: tuple[float, float] | None) -> tuple[float, float] | None:
    return None if ci is None else (-ci[1], -ci[0])


def _same_test_set(a: Group, b: Group) -> bool:
    sa, sb = a.first, b.first
    return (
        sa["test_images"] == sb["test_images"]
        and sa["data_source"] == sb["data_source"]
        and sa["config"].get("limit_test") == sb["config"].get("limit_test")
    )


def compare_pair(a: Group, b: Group) -> Pair | None:
    """The pair tested on the seeds both ran (paired by seed number); None when they share no seed or no test set."""
    runs_a, runs_b = a.by_seed(), b.by_seed()
    common = sorted(set(runs_a) & set(runs_b))
    if not common or not _same_test_set(a, b):
        return None
    per_seed = [_seed_pair(s, runs_a[s], runs_b[s]) for s in common]
    if np.mean([p.diff for p in per_seed]) < 0:  # A is the more accurate, so differences read as positive
        return compare_pair(b, a)
    only = (sorted(set(runs_a) - set(common)), sorted(set(runs_b) - set(common)))
    return Pair(a.dataset, a.label, b.label, per_seed, only, a.model, b.model)


def robustness_pairs(a: Group, b: Group) -> list[Pair]:
    """The two models under each robustness measure both measured on the same images (robustness.npz): McNemar on
    per-(image, cell) correctness for each seed, a t-interval over seeds with several. Ordered by which model keeps
    more accuracy, like the accuracy pairs."""
    runs_a, runs_b = a.by_seed(), b.by_seed()
    per_measure: dict[str, list[SeedPair]] = {}
    for seed in sorted(set(runs_a) & set(runs_b)):
        ra, rb = runs_a[seed].robust_correct, runs_b[seed].robust_correct
        if ra is None or rb is None or not np.array_equal(ra[0], rb[0]):
            continue  # no per-image results, or not the same images: nothing paired to test
        for measure in sorted(set(ra[1]) & set(rb[1])):
            ca, cb = ra[1][measure], rb[1][measure]
            if ca.shape != cb.shape:
                continue
            m = mcnemar_exact(ca, cb)
            top_a, top_b = float(ca.mean()), float(cb.mean())
            ci = mcnemar_interval(m.b, m.c, len(ca))
            per_measure.setdefault(measure, []).append(SeedPair(seed, top_a, top_b, top_a - top_b, ci, m.b, m.c, m.p))
    pairs = []
    for measure, per_seed in per_measure.items():
        if np.mean([s.diff for s in per_seed]) < 0:
            per_seed = [SeedPair(s.seed, s.top1_b, s.top1_a, -s.diff, _negated(s.ci), s.c, s.b, s.p) for s in per_seed]
            pairs.append(Pair(a.dataset, b.label, a.label, per_seed, ([], []), b.model, a.model, measure=measure))
        else:
            pairs.append(Pair(a.dataset, a.label, b.label, per_seed, ([], []), a.model, b.model, measure=measure))
    return pairs


def all_pairs(groups: list[Group], protocol: Protocol | None = None) -> list[Pair]:
    """Every pair of models per data set, by test top-1 and by each robustness measure both have, whether its verdict
    is confirmatory under ``protocol`` (the study's declaration; None: everything is exploratory, and robustness
    measures always are unless declared), and its p Holm-adjusted within its family: the confirmatory pairs together,
    the exploratory ones together. A declared comparison's error rate is controlled over what was declared; were it
    adjusted over exploratory rows too, adding or dropping analyses after looking could change a declared verdict."""
    pairs = []
    for dataset in sorted({g.dataset for g in groups}):
        gs = [g for g in groups if g.dataset == dataset]
        pairs += [p for a, b in combinations(gs, 2) if (p := compare_pair(a, b)) is not None]
        pairs += [p for a, b in combinations(gs, 2) for p in robustness_pairs(a, b)]
    labelled = [
        dataclasses.replace(
            p, **dict(zip(("status", "status_reason"), status(protocol, p.model_a, p.model_b, p.seeds, p.measure)))
        )
        for p in pairs
    ]
    adjusted: dict[int, float | None] = {}
    for family in ("confirmatory", "exploratory"):
        members = [i for i, p in enumerate(labelled) if p.status == family]
        adjusted.update(zip(members, holm([labelled[i].p for i in members])))
    return [dataclasses.replace(p, p_adjusted=adjusted[i]) for i, p in enumerate(labelled)]


def write_pairs(study_dir: Path, pairs: list[Pair]) -> None:
    write_csv(study_dir / PAIRS_CSV, [p.row() for p in pairs], PAIRS_COLUMNS)
    rows = [
        {
            "dataset": p.dataset,
            "measure": p.measure,
            "model_a": p.a,
            "model_b": p.b,
            "seed": s.seed,
            "top1_a": s.top1_a,
            "top1_b": s.top1_b,
            "diff_top1": s.diff,
            "diff_ci_low": s.ci[0] if s.ci else None,
            "diff_ci_high": s.ci[1] if s.ci else None,
            "mcnemar_b": s.b,
            "mcnemar_c": s.c,
            "mcnemar_p": s.p,
        }
        for p in pairs
        for s in p.per_seed
    ]
    write_csv(study_dir / PAIRS_BY_SEED_CSV, rows, PAIRS_BY_SEED_COLUMNS)


def points(fraction: float) -> str:
    return f"{fraction * 100:.2f}"


def p_value(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"= {p:.3f}" if p < 0.1 else f"= {p:.2f}"


def _label(pair: Pair) -> str:
    return "Confirmatory" if pair.status == "confirmatory" else f"Exploratory ({pair.status_reason})"


def _adjusted(pair: Pair) -> str:
    """The Holm-adjusted p where it differs from the test's own (several pairs in the study)."""
    if pair.p_adjusted is None or pair.p is None or abs(pair.p_adjusted - pair.p) < 1e-12:
        return ""
    return f", Holm-adjusted p {p_value(pair.p_adjusted)}"


def pair_finding(pair: Pair) -> list[str]:
    """The verdict on one pair in words, labelled confirmatory or exploratory: a difference with its interval and
    test, or that there is none to see. One seed speaks of two trained networks, never of two architectures."""
    ci, m, n = pair.ci, pair.mcnemar, len(pair.per_seed)
    interval = f"95% CI {points(ci[0])} to {points(ci[1])}" if ci else "no per-example results to test it on"
    notes = []
    if n == 1:
        test = f"McNemar p {p_value(m[2])}{_adjusted(pair)}, b = {m[0]}, c = {m[1]}" if m else "no McNemar test"
        if pair.significant:
            notes.append(
                f"{_label(pair)}: one trained network, not the architecture: this {pair.a} network is more "
                f"accurate than this {pair.b} network by {points(pair.diff)} points ({interval}; {test}; seed "
                f"{pair.seeds[0]}). Whether {pair.a} is the better architecture needs several seeds."
            )
        else:
            notes.append(
                f"{_label(pair)}: {pair.a} and {pair.b}: no significant difference between these two trained "
                f"networks at this test-set size ({test}; {pair.a} {points(pair.diff)} points ahead, {interval}; seed "
                f"{pair.seeds[0]})."
            )
        notes.append(
            "One seed each compares two trained networks, not two architectures: the spread over seeds is "
            "unknown until more seeds run (--seeds 0,1,2)."
        )
    else:
        every_seed = (
            ""
            if not m
            else ("; McNemar p < 0.001 in every seed" if m[2] < 0.001 else f"; McNemar p <= {m[2]:.3f} in every seed")
        )
        wins = f"{pair.a} wins {pair.wins_a} of {n} seeds"
        t = f"paired t p {p_value(pair.t_p)}{_adjusted(pair)}"
        if pair.significant:
            notes.append(
                f"{_label(pair)}: {pair.a} is more accurate than {pair.b} by {points(pair.diff)} points on average "
                f"over {n} seeds ({interval} over seeds, {t}; {wins}{every_seed})."
            )
        else:
            notes.append(
                f"{_label(pair)}: {pair.a} and {pair.b}: no significant difference over {n} seeds ({pair.a} "
                f"{points(pair.diff)} points ahead on average, {interval} over seeds, {t}; {wins})."
            )
        if pair.diff_std is not None and pair.diff_std > abs(pair.diff) / 2:
            need = pair.seeds_needed
            notes.append(
                f"The difference varies from seed to seed by {points(pair.diff_std)} points (standard "
                f"deviation), more than half the difference itself: more seeds are needed; "
                + (
                    f"about {need} seeds in all would resolve a difference of this size at this spread."
                    if need
                    else "a difference this small would need more than 1,000 seeds at this spread."
                )
            )
    if pair.unpaired_seeds[0] or pair.unpaired_seeds[1]:
        notes.append(
            f"Seeds run by only one of the two are left out of this comparison "
            f"({pair.a}: {pair.unpaired_seeds[0] or 'none'}; {pair.b}: {pair.unpaired_seeds[1] or 'none'})."
        )
    return notes
