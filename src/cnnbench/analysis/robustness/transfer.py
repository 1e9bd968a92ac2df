"""A study's robustness (measure_runs), and its transfer attacks: PGD examples made on one model, shown to another.

A masking check (Athalye et al., 2018; Carlini et al., 2019): an attack made on a different network never sees the
target's gradients, so it must not hurt the target more than the white-box attack on the target itself. If it does,
the target's gradients misled its own attack and its white-box number overstates its robustness. Pairs are the runs
of one data set and seed, attacked on exactly the images their robustness.json used (robustness.npz's index), at
the largest PGD radius each reported.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from itertools import permutations
from pathlib import Path

import numpy as np
import torch

from ...engine.evaluate_run import load_run_model
from ...engine.runtime import resolve_device
from ...fileio import write_csv, write_json
from ...layout import ROBUSTNESS_JSON, ROBUSTNESS_NPZ, TRANSFER_CSV, TRANSFER_JSON, run_dirs_of
from . import masking
from .attacks import PixelModel, pgd
from .evaluate import run_robustness

FIELDS = ["dataset", "seed", "source", "target", "eps", "pgd_steps", "images", "transfer_top1", "white_box_top1"]


def _attackable(run_dir: Path) -> dict | None:
    """The run's robustness.json where it holds a PGD result and its per-image file, else None."""
    try:
        result = json.loads((run_dir / ROBUSTNESS_JSON).read_text())
    except (OSError, ValueError):
        return None
    return result if result.get("adversarial", {}).get("pgd") and (run_dir / ROBUSTNESS_NPZ).exists() else None


def study_transfer(study: Path, device: str = "auto", log: Callable[[str], None] = print) -> list[dict]:
    """Attack every ordered pair of runs (same data set and seed) with PGD made on the source; write transfer.csv
    and transfer.json (with the masking check) in the study folder. Returns the rows (none: nothing written)."""
    dev = resolve_device(device)
    runs = {r: res for r in run_dirs_of(study) if (res := _attackable(r)) is not None}
    groups: dict[tuple, list[Path]] = {}
    for run_dir, res in runs.items():
        groups.setdefault((res["dataset"], res["seed"]), []).append(run_dir)
    rows, checks = [], []
    for (dataset, seed), members in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        if len(members) < 2:
            continue
        loaded = {r: _pixel_model(r, dev) for r in members}
        for source, target in permutations(members, 2):
            res_t = runs[target]
            eps_key = max(res_t["adversarial"]["pgd"], key=float)
            eps = float(eps_key)
            steps = int(res_t["attack_settings"]["pgd_steps"])
            step = res_t["attack_settings"]["pgd_step"]
            index = np.load(target / ROBUSTNESS_NPZ)["index"]
            x_all, y_all, _ = loaded[target]
            x = x_all[index].float() / 255
            y = y_all[index]
            transfer = _transfer_accuracy(loaded[source][2], loaded[target][2], x, y, eps, step, steps, seed, dev)
            white = float(res_t["adversarial"]["pgd"][eps_key])
            row = {
                "dataset": dataset,
                "seed": seed,
                "source": runs[source]["model"],
                "target": res_t["model"],
                "eps": eps,
                "pgd_steps": steps,
                "images": len(index),
                "transfer_top1": transfer,
                "white_box_top1": white,
            }
            rows.append(row)
            checks.append(
                masking.black_box_not_stronger(
                    f"PGD made on {row['source']}", transfer, f"PGD on {row['target']}", white, eps
                )
            )
            log(
                f"  {dataset} seed {seed}: PGD from {row['source']} leaves {row['target']} at {transfer:.1%} "
                f"(its own white-box PGD: {white:.1%}, eps {eps:.4g})"
            )
    if rows:
        write_csv(study / TRANSFER_CSV, rows, FIELDS)
        write_json(study / TRANSFER_JSON, {"rows": rows, "masking": masking.summary(checks)})
    return rows


def measure_runs(study: Path, run_dirs, cfg, log: Callable[[str], None] = print) -> None:
    """A study's robustness: ``cfg`` (a RobustnessConfig) on each of ``run_dirs``, then, where PGD ran, the transfer
    attacks between the study's models."""
    for run_dir in run_dirs:
        run_robustness(run_dir, cfg, log=log)
    if "pgd" in cfg.attacks:
        study_transfer(study, cfg.device, log=log)


def _pixel_model(run_dir: Path, device: torch.device):
    run, data = load_run_model(run_dir, device, full_test_set=True)
    model = PixelModel(run.model, data.mean, data.std, run.config.channels_last).to(device).eval()
    return data.test_x, data.test_y.long(), model


def _transfer_accuracy(source, target, x, y, eps, step, steps, seed, device, batch_size: int = 250) -> float:
    generator = torch.Generator().manual_seed(seed)
    step_size = eps / 4 if step == "eps/4" else float(step)
    right = 0
    for a in range(0, len(x), batch_size):
        xb, yb = x[a : a + batch_size].to(device), y[a : a + batch_size].to(device)
        adv = pgd(lambda v: source(v).float(), xb, yb, eps, step_size, steps, generator)
        with torch.inference_mode():
            right += int((target(adv).argmax(1) == yb).sum())
    return right / len(x)
