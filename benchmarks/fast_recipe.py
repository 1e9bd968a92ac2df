"""The fast preset's tuning on validation: which candidate setting wins, chosen on validation top-1 only.

Each candidate is a study of both models trained with `--val-split` (one seed); the winner is the candidate with the
highest mean validation top-1 over the models (one recipe for both, so the comparison stays fair). Test figures of
these studies are never read here. Prints a markdown table and, on the last line, the winner's flags; with --flags-out
it also writes the flags to a file for the shell to pass on.

    python benchmarks/fast_recipe.py tune/lr0.2 tune/base tune/lr0.8 --flags-out chosen.flags
    python benchmarks/fast_recipe.py --flags-of lr0.8-wd0.001     # --lr 0.8 --weight-decay 0.001
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from cnnbench.cli import exit_code_of
from cnnbench.fileio import read_json

# the settings a candidate's name may carry, and the compare flag that sets each (name: lr0.2-wd0.001 and so on)
SETTING_FLAGS = {"lr": "--lr", "wd": "--weight-decay", "ls": "--label-smoothing", "ep": "--epochs"}


def candidate_flags(name: str) -> list[str]:
    """``lr0.8-wd0.001`` -> ``["--lr", "0.8", "--weight-decay", "0.001"]``; ``base`` -> ``[]``."""
    flags = []
    for part in name.split("-"):
        key = next((k for k in SETTING_FLAGS if part.startswith(k) and part[len(k) :]), None)
        if key is None:
            if part == "base":
                continue
            raise ValueError(f"{name!r}: each part is base or one of {sorted(SETTING_FLAGS)} followed by a value")
        flags += [SETTING_FLAGS[key], part[len(key) :]]
    return flags


def validation_scores(study: Path) -> dict[str, float]:
    """Model -> final validation top-1 of each finished run in a study (the runs must hold a validation split)."""
    scores = {}
    for summary_file in sorted((study / "runs").glob("*/summary.json")):
        summary = read_json(summary_file)
        if summary.get("val_top1") is None:
            raise ValueError(f"{summary_file} has no validation top-1: tune with --val-split")
        scores[summary["model"]] = float(summary["val_top1"])
    return scores


def choose(studies: list[Path]) -> tuple[Path, list[str]]:
    """The winning study and the markdown rows of every candidate (missing runs are listed, never chosen)."""
    scores = {study: validation_scores(study) for study in studies}
    models = sorted({m for s in scores.values() for m in s})
    complete = {s: statistics.fmean(v.values()) for s, v in scores.items() if v and set(v) == set(models)}
    if not complete:
        raise ValueError("no candidate finished every model's run: nothing to choose from")
    best = max(complete, key=complete.get)
    rows = [f"| candidate | {' | '.join(models)} | mean | chosen |", "|---" * (len(models) + 3) + "|"]
    for study in studies:
        cells = [f"{scores[study][m]:.2%}" if m in scores[study] else "not finished" for m in models]
        mean = f"{complete[study]:.2%}" if study in complete else "-"
        rows.append(f"| {study.name} | {' | '.join(cells)} | {mean} | {'yes' if study == best else ''} |")
    return best, rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("studies", nargs="*", type=Path, help="one study folder per candidate, named by its settings")
    p.add_argument("--flags-out", type=Path, default=None, help="write the winner's compare flags to this file")
    p.add_argument("--flags-of", metavar="NAME", default=None, help="print a candidate name's flags and stop")
    args = p.parse_args()
    try:
        if args.flags_of is not None:
            print(" ".join(candidate_flags(args.flags_of)))
            return
        if not args.studies:
            p.error("give the candidates' study folders (or --flags-of NAME)")
        best, rows = choose(args.studies)
    except ValueError as e:
        p.error(str(e))
    flags = candidate_flags(best.name)
    print("validation top-1 (final epoch, one seed), the candidate with the best mean wins:")
    print("\n".join(rows))
    print("chosen:", best.name, " ".join(flags))
    if args.flags_out:
        args.flags_out.write_text(" ".join(flags) + "\n")


if __name__ == "__main__":
    sys.exit(exit_code_of(main, "fast_recipe.py"))
