"""Markdown tables of a study's insight files, for docs/RESULTS.md: per run the median update-to-weight ratio per stage
early and late in training, flagged layers, dead channels, the loss landscape; CKA between the models' stages.

    python scripts/insight_summary.py studies/modern-seed2
"""

import statistics
import sys
from pathlib import Path

from cnnbench.fileio import read_csv, read_json
from cnnbench.layout import DEAD_UNITS_CSV, DYNAMICS_CSV, INSIGHT_JSON, STUDY_INSIGHT_DIR, run_dirs_of
from cnnbench.report.insight import flagged_layers, landscape_curves, landscape_numbers, layer_series, layer_table


def main(study: Path) -> None:
    for run in run_dirs_of(study):
        print(f"\n#### {run.name}\n")
        if (run / DYNAMICS_CSV).exists():
            series = layer_series(run)
            print(
                "| stage | layers | median update ratio, first third | last third | median gradient norm "
                "|\n|---|---|---|---|---|"
            )
            for r in layer_table(series):
                print(f"| {r['stage']} | {r['layers']} | {r['early']:.2e} | {r['late']:.2e} | {r['grad_norm']:.3g} |")
            print(
                "\n| epoch | lr (median) | "
                + " | ".join(stages := list(dict.fromkeys(s["stage"] for s in series.values())))
                + " |\n|---|---|"
                + "---|" * len(stages)
            )
            rows = read_csv(run / DYNAMICS_CSV)
            for epoch in sorted({int(r["epoch"]) for r in rows}):
                here = [r for r in rows if int(r["epoch"]) == epoch]
                per_stage = [
                    statistics.median(float(r["update_ratio"]) for r in here if r["stage"] == st) for st in stages
                ]
                lr = statistics.median(float(r["lr"]) for r in here)
                print(f"| {epoch} | {lr:.4f} | " + " | ".join(f"{v:.1e}" for v in per_stage) + " |")
            flagged = flagged_layers(series)
            print(
                "\nflagged: "
                + (
                    "; ".join(
                        f"{f['layer']} ({f['stage']}) median {f['median']:.2e}, {f['verdict']}, "
                        f"{f['outside']:.0%} of steps outside"
                        for f in flagged
                    )
                    or "none"
                )
            )
            dead = [r for r in read_csv(run / DEAD_UNITS_CSV)]
            last = max(int(r["epoch"]) for r in dead)
            print(
                "dead ReLU channels by epoch: "
                + "; ".join(
                    f"{stage} " + " ".join(f"{float(r['dead_fraction']):.1%}" for r in dead if r["stage"] == stage)
                    for stage in dict.fromkeys(r["stage"] for r in dead)
                )
                + f" (epochs 1-{last})"
            )
        if (run / INSIGHT_JSON).exists():
            info = read_json(run / INSIGHT_JSON)
            numbers = landscape_numbers(landscape_curves(run))
            print(
                f"landscape on {info['landscape_images']} training images: "
                + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in numbers.items())
            )
            cka = read_csv(run / "insight" / "cka.csv")
            print(
                "CKA between consecutive stages: "
                + ", ".join(f"{a['stage']}-{b['stage']} {float(b[a['stage']]):.2f}" for a, b in zip(cka, cka[1:]))
            )
    for path in sorted((study / STUDY_INSIGHT_DIR).glob("cka-*.csv")):
        rows = read_csv(path)
        cols = [c for c in rows[0] if c != "stage"]
        model_a, model_b = path.stem.split("-vs-")[0].split("-")[-1], path.stem.split("-vs-")[1]
        print(f"\n{path.stem}\n\n| {model_a} \\ {model_b} | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols))
        for r in rows:
            print(f"| {r['stage']} | " + " | ".join(f"{float(r[c]):.2f}" for c in cols) + " |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
