"""The written comparison of a study: comparison.csv/.md, pairs.csv and the findings, from run folders alone."""

from __future__ import annotations

from pathlib import Path

from ..analysis.protocol import Protocol
from ..fileio import write_csv, write_text
from ..layout import COMPARISON_CSV, COMPARISON_MD
from .formatting import TOP1_LEGEND, megabytes, millions, minutes, pct, rate, top1_cell
from .reference import study_reference
from .robustness import robustness_markdown
from .significance import Pair, p_value, pair_finding, points, write_pairs
from .tables import COMPARISON_COLUMNS, Group, has_validation


def write_comparison(study_dir: Path, groups: list[Group], pairs: list[Pair]) -> list[dict]:
    rows = [g.row() for g in groups]
    write_csv(study_dir / COMPARISON_CSV, rows, COMPARISON_COLUMNS)
    write_pairs(study_dir, pairs)
    write_text(study_dir / COMPARISON_MD, comparison_markdown(groups, pairs))
    return rows


def verdict(pair: Pair) -> str:
    if pair.significant is None:
        return "untested"
    if not pair.significant:
        text = "no significant difference"
    elif pair.one_seed:
        better = "more accurate" if pair.measure == "test_top1" else "more robust here"
        text = f"this {pair.a} network {better} (one trained network, not the architecture)"
    else:
        text = f"{pair.a} " + ("more accurate" if pair.measure == "test_top1" else "more robust here")
    return f"{text}; {pair.status}"


def deciding_test(pair: Pair) -> str:
    """The test the verdict rests on, in a few words."""
    if pair.p is None:
        return "none (no per-image results)"
    return f"paired t over {len(pair.seeds)} seeds" if not pair.one_seed else "exact McNemar, one seed"


def pair_cells(pair: Pair) -> dict:
    """One pair as the report's table shows it (markdown and HTML alike): the verdict, the difference with the
    interval of the test that decided it, that test's p after Holm's adjustment and before it; McNemar's counts as a
    per-image detail."""
    ci, m = pair.ci, pair.mcnemar
    adjusted = pair.p_adjusted if pair.p_adjusted is not None else pair.p
    return {
        "measure": pair.measure if pair.measure != "test_top1" else "test top-1",
        "a": pair.a,
        "b": pair.b,
        "seeds": " ".join(map(str, pair.seeds)),
        "diff": points(pair.diff),
        "ci": f"{points(ci[0])} to {points(ci[1])}" if ci else "-",
        "method": pair.ci_method or "-",
        "test": deciding_test(pair),
        "p_adjusted": p_value(adjusted).removeprefix("= ") if adjusted is not None else "-",
        "p": p_value(pair.p).removeprefix("= ") if pair.p is not None else "-",
        "mcnemar": f"{m[0]} / {m[1]}, p {'<' if m[2] < 0.001 else '='} {max(m[2], 0.001):.3f}" if m else "-",
        "wins": f"{pair.wins_a} of {len(pair.seeds)}",
        "verdict": verdict(pair),
        "status": pair.status,
    }


STATUS_LEGEND = (
    "Confirmatory: the comparison, seeds and test the study declared before it trained, a claim about the "
    "architectures. Exploratory: everything else (other measures, seeds added after results, pairs not declared), "
    "worth a look but not a claim."
)
PAIRS_LEGEND = (
    "A − B: difference (percentage points), A being the better on average. The verdict rests on the deciding test "
    "(a paired t over seeds with several seeds; with one, the exact McNemar test on the test images) at p < 0.05 "
    "after Holm's adjustment within its family (the confirmatory pairs together, the exploratory ones together); "
    "its 95% interval comes from the same test, before adjustment (with one seed it inverts McNemar's test), so an "
    "interval that excludes 0 beside an adjusted p above 0.05 means the difference did not survive the correction. "
    "McNemar b / c: images only A gets right / only B gets right, a per-image detail (with several seeds the counts "
    "summed and the largest per-seed p, not a test of its own). pairs.csv and pairs_by_seed.csv hold every number."
)


def comparison_markdown(groups: list[Group], pairs: list[Pair]) -> str:
    out = ["# Comparison", ""]
    for dataset in sorted({g.dataset for g in groups}):
        gs = [g for g in groups if g.dataset == dataset]
        has_val = has_validation(gs)
        out += [
            f"## {dataset}",
            "",
            f"Data: {gs[0].first['data_source']}. Metrics at the last epoch. {TOP1_LEGEND} "
            "Inference images/s: test-set evaluation speed (median over epochs); peak memory: process resident "
            "peak on CPU (data set included), allocator peak on CUDA."
            + (
                " Validation top-1: on images held out of the training split (--val-split), the number to choose "
                "recipes on."
                if has_val
                else ""
            ),
            "",
            "| model | variant | seeds | epochs | params | MACs | test loss | test top-1 | test top-5 | "
            + ("validation top-1 | " if has_val else "")
            + "training time | per epoch | train images/s | inference images/s | peak memory | device, precision |",
            "|---" * (15 + has_val) + "|",
        ]
        for g in gs:
            r = g.row()
            val = (
                (f"{pct(r['val_top1'], r['val_top1_std'])} | " if r["val_top1"] is not None else "- | ")
                if has_val
                else ""
            )
            out.append(
                f"| {g.model} | {g.described} | "
                f"{len(g.runs)} | {r['epochs']} | {millions(r['params'])} | {r['macs'] / 1e9:.3f} G | "
                f"{r['test_loss']:.4f} | {top1_cell(r)} | {pct(r['test_top5'], r['test_top5_std'])} | {val}"
                f"{minutes(r['train_time_s'])} | {r['time_per_epoch_s']:.1f} s | {r['images_per_s']:.0f} | "
                f"{rate(r['infer_images_per_s'])} | {megabytes(r['peak_memory_mb'])} | {r['device']}, "
                f"{r['precision']} |"
            )
        ds_pairs = [p for p in pairs if p.dataset == dataset]
        if ds_pairs:
            out += [
                "",
                "Pairs of models, on the same test images and seeds:",
                "",
                "| measure | model A | model B | verdict | A − B (points) | 95% interval | p, Holm-adjusted | "
                "p | deciding test | A wins | seeds | McNemar b / c, p |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|",
            ]
            row = (
                "| {measure} | {a} | {b} | {verdict} | {diff} | {ci} | {p_adjusted} | {p} | {test} | {wins} | "
                "{seeds} | {mcnemar} |"
            )
            out += [row.format(**pair_cells(p)) for p in ds_pairs]
            out += ["", STATUS_LEGEND, "", PAIRS_LEGEND]
        out += robustness_markdown(gs)
        if study_reference(dataset):
            table, ref = study_reference(dataset)
            out += [
                "",
                f"The study's {table} for comparison (its own setup and hardware; training time as printed):",
                "",
                "| model | test loss | top-1 | top-5 | training time |",
                "|---|---|---|---|---|",
            ]
            out += [f"| {m} | {loss:.4f} | {pct(t1)} | {pct(t5)} | {t} |" for m, loss, t1, t5, t in ref]
        out.append("")
    return "\n".join(out)


def robustness_findings(pairs: list[Pair]) -> list[str]:
    """Robustness differences with their tests, exploratory unless a protocol declared them: the significant ones
    one by one (after Holm's correction over the study), the rest named together."""
    if not pairs:
        return []
    notes = []
    for p in pairs:
        if not p.significant:
            continue
        seeds = "one seed: these two trained networks" if p.one_seed else f"{len(p.seeds)} seeds"
        top_a = sum(s.top1_a for s in p.per_seed) / len(p.per_seed)
        top_b = sum(s.top1_b for s in p.per_seed) / len(p.per_seed)
        notes.append(
            f"Exploratory ({p.status_reason}): under {p.measure}, {p.a} keeps {points(top_a)}% against {p.b}'s "
            f"{points(top_b)}% ({points(p.diff)} points; {_test_words(p)}; {seeds})."
        )
    level = [p.measure for p in pairs if not p.significant]
    if level:
        notes.append(f"No significant robustness difference (paired tests, Holm-corrected) under: {', '.join(level)}.")
    return notes


def _test_words(p: Pair) -> str:
    adjusted = f", Holm p {p_value(p.p_adjusted)}" if p.p_adjusted is not None else ""
    if p.one_seed:
        m = p.mcnemar
        return f"McNemar b = {m[0]}, c = {m[1]}, p {p_value(m[2])}{adjusted}"
    return f"paired t over seeds p {p_value(p.t_p)}{adjusted}"


def protocol_sentence(protocol: Protocol | None) -> str:
    """What the study declared before training, in one sentence (or that it declared nothing)."""
    if protocol is None:
        return (
            "No protocol was declared before this study trained (it predates them): every verdict below is exploratory."
        )
    pairs = ", ".join(f"{a} vs {b}" if a != b else f"{a} fine-tuned vs from scratch" for a, b in protocol.comparisons)
    when = (
        "before any run began, as the run folders show"
        if protocol.before_results
        else protocol.doubt or "after some runs had finished"
    )
    tuning = (
        f" Each model tuned first with the same budget: {protocol.tuning.get('trials_per_model')} trials of "
        f"{protocol.tuning.get('space')} ({protocol.tuning.get('sampler')}, seed {protocol.tuning.get('seed')}), "
        f"scored on validation only; {protocol.tuning.get('rule')}."
        if protocol.tuning
        else ""
    )
    added = protocol.seeds_added_after_results
    return (
        f"Protocol declared {protocol.declared_at or 'with the study'} ({when}): seeds "
        f"{', '.join(map(str, protocol.declared_seeds))}; {pairs or 'no comparison'}; {protocol.metric}; "
        f"{protocol.test}; "
        f"alpha {protocol.alpha:g}, Holm's correction over the study's pairs.{tuning}"
        + (
            f" Seeds added after results existed: {', '.join(map(str, added))} (verdicts using them are exploratory)."
            if added
            else ""
        )
    )


def findings(groups: list[Group], pairs: list[Pair], protocol: Protocol | None = None) -> dict[str, list[str]]:
    """Plain-language findings per data set, written from the measured numbers and their tests: never a bare ranking.
    The first says what was declared before training; each verdict is labelled confirmatory or exploratory."""
    result: dict[str, list[str]] = {}
    for dataset in sorted({g.dataset for g in groups}):
        gs = sorted((g for g in groups if g.dataset == dataset), key=lambda g: -g.mean("test_top1"))
        by_label = {g.label: g for g in gs}
        notes = [protocol_sentence(protocol)] if pairs else []
        if len(gs) == 1:
            g = gs[0]
            r = g.row()
            notes.append(
                f"{g.label} ({g.qualifier}) reached {top1_cell(r)} test top-1 in "
                f"{minutes(g.mean('train_time_s'))} "
                "of training."
            )
        robust = [p for p in pairs if p.dataset == dataset and p.measure != "test_top1"]
        for pair in (p for p in pairs if p.dataset == dataset and p.measure == "test_top1"):
            notes += pair_finding(pair)
            a, b = by_label[pair.a], by_label[pair.b]
            same_machine = len(a.device_names | b.device_names) == 1
            if same_machine:
                time_ratio = a.mean("train_time_s") / max(b.mean("train_time_s"), 1e-9)
                cost = (
                    f"{time_ratio:.2f}x the training time"
                    if abs(time_ratio - 1) > 0.05
                    else "about the same training time"
                )
                timing = (
                    f"{pair.a} takes {cost} of {pair.b} ({minutes(a.mean('train_time_s'))} vs "
                    f"{minutes(b.mean('train_time_s'))}) with "
                )
            else:  # a mean over different machines is no one's speed
                timing = (
                    f"Training times of {pair.a} and {pair.b} are not compared: their runs trained on different "
                    f"hardware ({'; '.join(sorted(a.device_names | b.device_names))}). {pair.a} has "
                )
            notes.append(
                f"{timing}{a.first['params'] / max(b.first['params'], 1):.2f}x the "
                f"parameters ({millions(a.first['params'])} vs {millions(b.first['params'])}); test loss "
                f"{a.mean('test_loss'):.4f} vs {b.mean('test_loss'):.4f}."
            )
        notes += robustness_findings(robust)
        machines = set().union(*(g.device_names for g in gs))
        if len(gs) > 1 and len(machines) == 1:
            fastest = min(gs, key=lambda g: g.mean("time_per_epoch_s"))
            notes.append(
                f"Fastest to train: {fastest.label} at {fastest.mean('images_per_s'):.0f} images/s "
                f"({fastest.mean('time_per_epoch_s'):.1f} s per epoch, on {next(iter(machines))})."
            )
        elif len(gs) > 1:
            notes.append(
                f"Speed is not ranked: these runs trained on {len(machines)} different machines "
                f"({'; '.join(sorted(machines))}), and a time on one says nothing of another."
            )
        result[dataset] = notes
    return result
