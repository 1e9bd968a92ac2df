"""``cnnbench robustness RUN_DIR``: a trained run under common corruptions and adversarial attacks, written to
robustness.json and robustness.csv in the run folder (atomically, once every number is in)."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ...data.loader import balanced_indices
from ...data.sources import resolve_data_root
from ...engine.evaluate_run import load_run_model
from ...engine.runtime import duration_text, resolve_device
from ...errors import ConfigError, did_you_mean
from ...fileio import write_csv, write_json, write_npz
from ...layout import ROBUSTNESS_CSV, ROBUSTNESS_JSON, ROBUSTNESS_NPZ
from . import autoattack, masking
from .attacks import PixelModel
from .corruptions import SUBSTITUTES, check_corruption_names, corrupt, corruption_set, set_name
from .measure import AttackSettings, Measurement

ATTACKS = ("fgsm", "pgd", "autoattack", "square")  # the last two: AutoAttack's code (cnnbench[attacks])
DEFAULT_ATTACKS = ("fgsm", "pgd")
CPU_DEFAULT_IMAGES = 1000  # per cell on CPU: the full grid is 750,000 images, hours on 2 cores
OFFICIAL = {"cifar10": "CIFAR-10-C", "cifar100": "CIFAR-100-C"}


# Natural images: eps 1, 2, 4, 8 / 255, step eps / 4, 10 steps; digits: 0.1-0.3, step 0.01, 40 steps (Madry et al.).
NATURAL_ATTACK = AttackSettings((1 / 255, 2 / 255, 4 / 255, 8 / 255), None, 10)
DIGIT_ATTACK = AttackSettings((0.1, 0.2, 0.3), 0.01, 40)
# The masking checks' large eps, where a model with usable gradients is left near 0% (RobustBench's threat models:
# 8/255 for CIFAR-10, 0.3 for MNIST; four and two times that), and how many times the PGD steps the "more steps"
# check takes.
LARGE_EPS = {True: 32 / 255, False: 0.6}
MORE_STEPS = 3
MASKING_IMAGES = 200  # the checks run on the first images of the cell (class-balanced), to stay cheap on a CPU
# AutoAttack and Square run at RobustBench's threat model unless --eps names radii: four radii of a 100-step
# ensemble would cost hours on a CPU, and the standard radius is the number the field compares.
STANDARD_EPS = {True: (8 / 255,), False: (0.3,)}


@dataclass(frozen=True)
class RobustnessConfig:
    corruptions: tuple[str, ...] | None = None  # None: every corruption of the image kind's set; () none
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    attacks: tuple[str, ...] = DEFAULT_ATTACKS
    eps: tuple[float, ...] | None = None  # None: the image kind's defaults (above)
    limit_test: int | None = None  # images per cell; None: CPU_DEFAULT_IMAGES on CPU, the whole test set on a GPU
    seed: int = 0  # seeds the corruptions and PGD's random start
    device: str = "auto"
    batch_size: int = 250
    pgd_steps: int | None = None  # None: the image kind's default (10 natural, 40 digits)
    pgd_restarts: int = 1  # random starts; an image counts as robust only if it survives every one
    masking_checks: bool = True  # also attack at a large eps and with more steps, and flag a masked attack


def check_config(cfg: RobustnessConfig) -> RobustnessConfig:
    bad = [s for s in cfg.severities if s not in range(1, 6)]
    if bad or not cfg.severities and cfg.corruptions != ():
        raise ConfigError(
            f"Severities must be whole numbers from 1 to 5, e.g. 1-5 or 1,3,5 (got {list(cfg.severities)})."
        )
    for a in cfg.attacks:
        if a not in ATTACKS:
            raise ConfigError(
                f"Unknown attack {a!r}{did_you_mean(a, ATTACKS)}: choose from {', '.join(ATTACKS)}, or 'none'."
            )
    if {"autoattack", "square"} & set(cfg.attacks):
        autoattack.require()  # before any work: a missing optional package is one clear message
    if cfg.eps is not None and any(not e >= 0 or e > 1 for e in cfg.eps):
        raise ConfigError(f"eps must be between 0 and 1 in pixel units, e.g. 0.0039 or 1/255 (got {list(cfg.eps)}).")
    if (cfg.pgd_steps is not None and cfg.pgd_steps < 1) or cfg.pgd_restarts < 1:
        raise ConfigError("--pgd-steps and --pgd-restarts must be positive whole numbers.")
    if cfg.limit_test is not None and cfg.limit_test < 1:
        raise ConfigError(f"--limit-test must be a positive number of images (got {cfg.limit_test}).")
    return cfg


def official_files(dataset: str, data_dir) -> Path | None:
    """The folder of the published .npy corruption files for this data set in the data root, if present."""
    name = OFFICIAL.get(dataset)
    if name is None:
        return None
    folder = resolve_data_root(data_dir) / name
    return folder if (folder / "labels.npy").exists() else None


class CellSource:
    """Corrupted images of one (corruption, severity) for the chosen test images: generated, or read from the
    official .npy files (5 severities x the test set, in the test set's order)."""

    def __init__(self, official: Path | None, images: torch.Tensor, labels: np.ndarray, index: np.ndarray, seed: int):
        self.official, self.images, self.index, self.seed = official, images, index, seed
        if official is not None:
            published = np.load(official / "labels.npy", mmap_mode="r")
            n = len(published) // 5
            if n != len(labels) or not np.array_equal(np.asarray(published[:n])[index], labels[index]):
                raise ConfigError(
                    f"The labels in {official / 'labels.npy'} do not match this test set's order (the official files "
                    "follow torchvision's CIFAR test split). Use torchvision's copy of the data set, or move the "
                    f"{official.name} folder away to evaluate on generated corruptions."
                )
            self.test_size = n

    def names(self, wanted: list[str]) -> list[str]:
        if self.official is None:
            return wanted
        missing = [n for n in wanted if not (self.official / f"{n}.npy").exists()]
        if missing:
            raise ConfigError(
                f"{self.official} lacks {', '.join(m + '.npy' for m in missing)}: add them, or name the "
                "corruptions that are there with --corruptions."
            )
        return wanted

    def cell(self, name: str, severity: int, start: int, stop: int) -> torch.Tensor:
        if self.official is None:
            # one seed per (corruption, severity, batch): any cell can be regenerated on its own
            seed = _stable_hash(self.seed, name, severity, start)
            return corrupt(name, self.images[self.index[start:stop]], severity, seed)
        block = np.load(self.official / f"{name}.npy", mmap_mode="r")
        rows = (severity - 1) * self.test_size + self.index[start:stop]
        return torch.from_numpy(np.ascontiguousarray(block[rows])).permute(0, 3, 1, 2).contiguous()


def _masking_checks(
    cfg: RobustnessConfig, m: Measurement, adversarial: dict, settings: AttackSettings, natural: bool, steps: int
) -> dict | None:
    """Carlini et al.'s and AutoAttack's sanity checks on the attacks just run (masking.py), on the first
    MASKING_IMAGES images of the cell: eps monotone, near zero at a large eps, more steps not weaker, the black-box
    Square not stronger than the white-box attacks; and whatever AutoAttack's own checks warned about."""

    def attacked(attack: str, eps: float, n_steps: int) -> float:
        return m.attacked_accuracy(attack, eps, settings, n_steps, cfg.pgd_restarts, MASKING_IMAGES)

    checks = [masking.falls_with_eps(a, by_eps) for a, by_eps in adversarial.items() if len(by_eps) > 1]
    checks += m.suite_checks
    if cfg.masking_checks:
        strongest = "pgd" if "pgd" in adversarial else next(iter(adversarial))
        large = LARGE_EPS[natural]
        checks.append(masking.near_zero_at_large_eps(strongest, large, attacked(strongest, large, steps)))
        if "pgd" in adversarial and adversarial["pgd"]:
            eps = max(adversarial["pgd"])
            base = float(m.per_image[f"pgd/{eps!r}"][:MASKING_IMAGES].mean())  # the reported attack, same images
            more = attacked("pgd", eps, steps * MORE_STEPS)
            checks.append(masking.more_steps_not_weaker(steps, base, steps * MORE_STEPS, more, eps))
        for eps in adversarial.get("autoattack", {}):
            white = float(m.per_image[f"autoattack-white-box/{eps!r}"][:MASKING_IMAGES].mean())
            square = (
                float(m.per_image[f"square/{eps!r}"][:MASKING_IMAGES].mean())
                if eps in adversarial.get("square", {})
                else attacked("square", eps, steps)
            )
            checks.append(masking.black_box_not_stronger("Square", square, "APGD-CE, APGD-T, FAB-T", white, eps))
    if not checks:
        return None
    result = masking.summary(checks)
    m.log(f"  masking checks: {result['verdict']}")
    return result


def _gradients(cfg: RobustnessConfig, radii_of: dict, steps: int, images: int, clean: float) -> float:
    """Input gradients the attacks will take, for the time estimate: PGD's steps x restarts per image and radius,
    AutoAttack's 100 APGD-CE steps per correctly classified image (its later stages see only the survivors), and
    the masking checks' extra PGD on MASKING_IMAGES."""
    per_image = {"fgsm": 1, "pgd": steps * cfg.pgd_restarts, "autoattack": 100 * clean, "square": 0}
    total = sum(per_image[a] * images * len(radii_of[a]) for a in cfg.attacks)
    if cfg.masking_checks:
        total += (1 + MORE_STEPS) * steps * cfg.pgd_restarts * min(MASKING_IMAGES, images)
    return total


def _stable_hash(*parts) -> int:
    return zlib.crc32(repr(parts).encode())


def _attacks(
    cfg: RobustnessConfig, m: Measurement, natural: bool, clean: float
) -> tuple[dict, dict, dict | None, dict]:
    """Each attack's accuracy per radius (keyed by the radius's repr, as robustness.json holds it), the settings
    they ran with, the masking checks' result and the seconds each attack took."""
    settings = NATURAL_ATTACK if natural else DIGIT_ATTACK
    eps_list = cfg.eps if cfg.eps is not None else settings.eps
    steps = cfg.pgd_steps or settings.steps
    # FGSM and PGD at every radius; AutoAttack and Square at the standard one unless --eps names radii
    radii_of = {a: eps_list if a in ("fgsm", "pgd") or cfg.eps is not None else STANDARD_EPS[natural] for a in ATTACKS}
    if cfg.attacks:
        gradients = _gradients(cfg, radii_of, steps, len(m.index), clean)
        m.log(
            f"  attacks: about {duration_text(m.seconds_per_gradient() * gradients)} "
            "(more where images resist AutoAttack's first attack or Square)"
        )
    adversarial: dict[str, dict[float, float]] = {}
    attack_seconds: dict[str, float] = {}  # per attack, all its radii: what BENCHMARKS.md's attack costs read
    for attack in cfg.attacks:
        before = m.timings["attack_s"]
        adversarial[attack] = {
            eps: m.attacked_accuracy(attack, eps, settings, steps, cfg.pgd_restarts) for eps in radii_of[attack]
        }
        attack_seconds[attack] = m.timings["attack_s"] - before
        m.log(f"  {attack:<18} " + " ".join(f"eps {e:.4g} {v:.1%}" for e, v in adversarial[attack].items()))
    attack_settings = {
        "eps": [float(e) for e in eps_list],
        "pgd_step": settings.step or "eps/4",
        "pgd_steps": steps,
        "pgd_restarts": cfg.pgd_restarts,
        "pgd_random_start": True,
        "norm": "Linf, pixel space [0, 1]",
        "precision": "fp32",  # attacks never run under autocast
        "model_mode": "eval",
        **(
            {"autoattack": {"version": "standard", "attacks": list(autoattack.STANDARD), "after": m.suite_stages}}
            if m.suite_stages
            else {}
        ),
    }
    by_eps_key = {a: {repr(float(e)): v for e, v in by_eps.items()} for a, by_eps in adversarial.items()}
    m.suite_checks += masking.pgd_not_weaker_than_autoattack(
        {"adversarial": by_eps_key, "attack_settings": attack_settings}
    )
    masking_result = _masking_checks(cfg, m, adversarial, settings, natural, steps) if cfg.attacks else None
    return by_eps_key, attack_settings, masking_result, attack_seconds


def _write(run_dir: Path, result: dict, m: Measurement) -> None:
    """robustness.csv (one row per cell, from the result), robustness.npz (per image), then robustness.json."""
    rows = [{"kind": "clean", "name": "clean", "level": "", "top1": result["clean_top1"]}]
    rows += [
        {"kind": "corruption", "name": n, "level": s, "top1": v}
        for n, sev in result["corruptions"].items()
        for s, v in sev.items()
    ]
    rows += [
        {"kind": "adversarial", "name": a, "level": e, "top1": v}
        for a, by_eps in result["adversarial"].items()
        for e, v in by_eps.items()
    ]
    write_csv(run_dir / ROBUSTNESS_CSV, rows, ["kind", "name", "level", "top1"])
    write_npz(run_dir / ROBUSTNESS_NPZ, index=m.index, **{k.replace("/", "|"): v for k, v in m.per_image.items()})
    write_json(run_dir / ROBUSTNESS_JSON, result)  # last: a complete robustness.json means complete results


def run_robustness(
    run_dir: str | Path, cfg: RobustnessConfig = RobustnessConfig(), log: Callable[[str], None] = print
) -> dict:
    """Evaluate the run's last checkpoint under corruptions and attacks; write robustness.json/.csv; return it."""
    cfg = check_config(cfg)
    run_dir = Path(run_dir)
    device = resolve_device(cfg.device)
    run, data = load_run_model(run_dir, device, full_test_set=True)
    train_cfg, precision = run.config, run.precision
    channels = data.test_x.shape[1]
    natural = channels == 3
    limit = cfg.limit_test or (CPU_DEFAULT_IMAGES if device.type == "cpu" else None)
    labels = data.test_y.numpy()
    index = balanced_indices(labels, limit) if limit and limit < len(labels) else np.arange(len(labels))
    names = check_corruption_names(
        list(corruption_set(channels)) if cfg.corruptions is None else cfg.corruptions, channels
    )
    official = official_files(train_cfg.dataset, train_cfg.data_dir) if names else None
    source = CellSource(official, data.test_x, labels, index, cfg.seed)
    names = source.names(names)
    pixel_model = PixelModel(run.model, data.mean, data.std, train_cfg.channels_last).to(device).eval()
    m = Measurement(pixel_model, data.test_x, labels, index, device, precision, cfg.batch_size, cfg.seed, log)
    clean = m.clean()
    log(f"{run_dir.name}: clean top-1 {clean:.2%} on {len(index)} test images ({precision}, {device.type})")
    corruptions = m.corruptions(names, cfg.severities, source)
    adversarial, attack_settings, masking_result, attack_seconds = _attacks(cfg, m, natural, clean)
    result = {
        "model": train_cfg.model,
        "dataset": train_cfg.dataset,
        "seed": train_cfg.seed,
        "epoch": run.epoch,
        "weights": run.weights,
        "clean_top1": clean,
        "corruptions": {n: {str(s): v for s, v in sev.items()} for n, sev in corruptions.items()},
        "mean_corruption_top1": float(np.mean([v for sev in corruptions.values() for v in sev.values()]))
        if corruptions
        else None,
        "adversarial": adversarial,
        "images": int(len(index)),
        "test_images": int(len(labels)),
        "source": str(official) if official else "generated",
        "corruption_set": set_name(channels, names)
        + ("" if official else ", generated by cnnbench (not the published benchmark files)"),
        "substitutes": {} if official else {n: SUBSTITUTES[n] for n in names if n in SUBSTITUTES},
        "attack_settings": attack_settings,
        "masking": masking_result,
        "config": {**asdict(cfg), "limit_test": limit},
        "device": device.type,
        "precision": precision,
        "timings": {**m.timings, "attack_s_by_attack": attack_seconds},
    }
    _write(run_dir, result, m)
    return result
