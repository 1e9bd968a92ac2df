"""``cnnbench robustness RUN_DIR``: a trained run under common corruptions and adversarial attacks, written to
robustness.json and robustness.csv in the run folder (atomically, once every number is in)."""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ...data.loader import balanced_indices
from ...data.sources import resolve_data_root
from ...engine.evaluate_run import load_run_model
from ...engine.runtime import autocast, duration_text, resolve_device, synchronize
from ...errors import ConfigError, did_you_mean
from ...fileio import write_csv, write_json, write_npz
from ...layout import ROBUSTNESS_CSV, ROBUSTNESS_JSON, ROBUSTNESS_NPZ
from . import autoattack, masking
from .attacks import PixelModel, fgsm, pgd
from .corruptions import SUBSTITUTES, check_corruption_names, corrupt, corruption_set, set_name

ATTACKS = ("fgsm", "pgd", "autoattack", "square")  # the last two: AutoAttack's code (cnnbench[attacks])
DEFAULT_ATTACKS = ("fgsm", "pgd")
CPU_DEFAULT_IMAGES = 1000  # per cell on CPU: the full grid is 750,000 images, hours on 2 cores
OFFICIAL = {"cifar10": "CIFAR-10-C", "cifar100": "CIFAR-100-C"}


@dataclass(frozen=True)
class AttackSettings:
    eps: tuple[float, ...]  # L-inf radii in pixel units ([0, 1] scale)
    step: float | None  # PGD step; None: eps / 4
    steps: int  # PGD iterations


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
    cfg, adversarial, per_image, attacked_accuracy, natural: bool, steps: int, suite_checks, log
) -> dict | None:
    """Carlini et al.'s and AutoAttack's sanity checks on the attacks just run (masking.py), on the first
    MASKING_IMAGES images of the cell: eps monotone, near zero at a large eps, more steps not weaker, the black-box
    Square not stronger than the white-box attacks; and whatever AutoAttack's own checks warned about."""
    checks = [masking.falls_with_eps(a, by_eps) for a, by_eps in adversarial.items() if len(by_eps) > 1]
    checks += suite_checks
    if cfg.masking_checks:
        strongest = "pgd" if "pgd" in adversarial else next(iter(adversarial))
        large = LARGE_EPS[natural]
        checks.append(
            masking.near_zero_at_large_eps(strongest, large, attacked_accuracy(strongest, large, steps, MASKING_IMAGES))
        )
        if "pgd" in adversarial and adversarial["pgd"]:
            eps = max(adversarial["pgd"])
            base = float(per_image[f"pgd/{eps!r}"][:MASKING_IMAGES].mean())  # the reported attack, same images
            more = attacked_accuracy("pgd", eps, steps * MORE_STEPS, MASKING_IMAGES)
            checks.append(masking.more_steps_not_weaker(steps, base, steps * MORE_STEPS, more, eps))
        for eps in adversarial.get("autoattack", {}):
            white = float(per_image[f"autoattack-white-box/{eps!r}"][:MASKING_IMAGES].mean())
            square = (
                float(per_image[f"square/{eps!r}"][:MASKING_IMAGES].mean())
                if eps in adversarial.get("square", {})
                else attacked_accuracy("square", eps, steps, MASKING_IMAGES)
            )
            checks.append(masking.black_box_not_stronger("Square", square, "APGD-CE, APGD-T, FAB-T", white, eps))
    if not checks:
        return None
    result = masking.summary(checks)
    log(f"  masking checks: {result['verdict']}")
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


def run_robustness(
    run_dir: str | Path, cfg: RobustnessConfig = RobustnessConfig(), log: Callable[[str], None] = print
) -> dict:
    """Evaluate the run's last checkpoint under corruptions and attacks; write robustness.json/.csv; return it."""
    cfg = check_config(cfg)
    run_dir = Path(run_dir)
    device = resolve_device(cfg.device)
    run, data = load_run_model(run_dir, device, full_test_set=True)
    train_cfg, model, epoch, precision = run.config, run.model, run.epoch, run.precision
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
    pixel_model = PixelModel(model, data.mean, data.std, train_cfg.channels_last).to(device).eval()
    y_all = torch.from_numpy(labels[index]).long()
    timings = {"corrupt_s": 0.0, "evaluate_s": 0.0, "attack_s": 0.0}

    def forward(x: torch.Tensor) -> torch.Tensor:
        with autocast(device, precision):
            return pixel_model(x)

    def attack_forward(x: torch.Tensor) -> torch.Tensor:
        """Attacks run in float32 whatever the training precision: a coarser forward pass can hide the gradient
        an attack follows (and report more robustness than the model has)."""
        return pixel_model(x).float()

    per_image: dict[str, np.ndarray] = {}  # which images each cell got right: robustness.npz, for paired tests

    def accuracy(batches, key: str) -> float:
        right = []
        for x_uint8, y in batches:
            start = time.perf_counter()
            with torch.inference_mode():
                right.append((forward(x_uint8.to(device).float() / 255).argmax(1).cpu() == y).numpy())
            synchronize(device)
            timings["evaluate_s"] += time.perf_counter() - start
        per_image[key] = np.concatenate(right)
        return float(per_image[key].mean())

    def spans():
        return [(s, min(s + cfg.batch_size, len(index))) for s in range(0, len(index), cfg.batch_size)]

    clean = accuracy(((data.test_x[index[a:b]], y_all[a:b]) for a, b in spans()), "clean")
    log(f"{run_dir.name}: clean top-1 {clean:.2%} on {len(index)} test images ({precision}, {device.type})")
    corruptions: dict[str, dict[int, float]] = {}
    started = time.perf_counter()
    for done, name in enumerate(names):
        if done == 1:  # one corruption measured: enough to say how long the rest will take
            each = time.perf_counter() - started
            log(f"  about {duration_text(each * (len(names) - 1))} for the other {len(names) - 1} corruptions")

        def cells(severity, name=name):
            for a, b in spans():
                start = time.perf_counter()
                x = source.cell(name, severity, a, b)
                timings["corrupt_s"] += time.perf_counter() - start
                yield x, y_all[a:b]

        corruptions[name] = {s: accuracy(cells(s), f"corruption/{name}/{s}") for s in cfg.severities}
        log(f"  {name:<18} " + " ".join(f"s{s} {v:.1%}" for s, v in corruptions[name].items()))
    settings = NATURAL_ATTACK if natural else DIGIT_ATTACK
    eps_list = cfg.eps if cfg.eps is not None else settings.eps
    steps = cfg.pgd_steps or settings.steps
    adversarial: dict[str, dict[float, float]] = {}
    suite_stages: dict[str, dict[str, float]] = {}  # AutoAttack: accuracy after each of its attacks, per eps
    suite_checks: list[masking.Check] = []
    generator = torch.Generator().manual_seed(cfg.seed)

    def suite_accuracy(attack: str, eps: float, images: int | None) -> float:
        """AutoAttack's standard suite, or its Square attack alone, through the authors' code."""
        n = len(index) if images is None else min(images, len(index))
        stages = autoattack.STANDARD if attack == "autoattack" else ("square",)
        start = time.perf_counter()
        flags, checks = autoattack.run_suite(
            pixel_model, data.test_x[index[:n]].float() / 255, y_all[:n], eps, cfg.seed, device, cfg.batch_size, stages
        )
        synchronize(device)
        timings["attack_s"] += time.perf_counter() - start
        if images is None:  # a reported cell
            per_image[f"{attack}/{eps!r}"] = flags[stages[-1]]
            if attack == "autoattack":
                per_image[f"autoattack-white-box/{eps!r}"] = flags["fab-t"]
                suite_stages[repr(float(eps))] = {k: float(v.mean()) for k, v in flags.items()}
            suite_checks[:] = autoattack.own_checks([c.detail for c in suite_checks + checks])
        return float(flags[stages[-1]].mean())

    def attacked_accuracy(attack: str, eps: float, n_steps: int, images: int | None = None) -> float:
        """Accuracy under the attack on the cell's images (the first ``images`` of them where given)."""
        if attack in ("autoattack", "square"):
            return suite_accuracy(attack, eps, images)
        right, seen, kept = 0, 0, []
        start = time.perf_counter()
        for a, b in spans():
            if images is not None:
                b = min(b, images)
                if a >= b:
                    break
            x = (data.test_x[index[a:b]].float() / 255).to(device)
            y = y_all[a:b].to(device)
            if attack == "fgsm":
                survived = attack_forward(fgsm(attack_forward, x, y, eps)).argmax(1) == y
            else:  # an image is robust only if every random start fails to flip it
                survived = torch.ones_like(y, dtype=torch.bool)
                for _ in range(cfg.pgd_restarts):
                    adv = pgd(attack_forward, x, y, eps, settings.step or eps / 4, n_steps, generator)
                    with torch.inference_mode():
                        survived &= attack_forward(adv).argmax(1) == y
            right += int(survived.sum())
            seen += len(y)
            kept.append(survived.cpu().numpy())
        synchronize(device)
        timings["attack_s"] += time.perf_counter() - start
        if images is None:  # a reported cell, not a masking check's
            per_image[f"{attack}/{eps!r}"] = np.concatenate(kept)
        return right / seen

    # FGSM and PGD at every radius; AutoAttack and Square at the standard one unless --eps names radii
    radii_of = {a: eps_list if a in ("fgsm", "pgd") or cfg.eps is not None else STANDARD_EPS[natural] for a in ATTACKS}
    if cfg.attacks:
        x = (data.test_x[index[: cfg.batch_size]].float() / 255).to(device)
        start = time.perf_counter()
        fgsm(attack_forward, x, y_all[: len(x)].to(device), 0.01)  # one gradient of a batch: the unit of cost
        synchronize(device)
        each = (time.perf_counter() - start) / len(x)
        log(
            f"  attacks: about {duration_text(each * _gradients(cfg, radii_of, steps, len(index), clean))} "
            "(more where images resist AutoAttack's first attack or Square)"
        )
    attack_seconds: dict[str, float] = {}  # per attack, all its radii: what BENCHMARKS.md's attack costs read
    for attack in cfg.attacks:
        before = timings["attack_s"]
        adversarial[attack] = {eps: attacked_accuracy(attack, eps, steps) for eps in radii_of[attack]}
        attack_seconds[attack] = timings["attack_s"] - before
        log(f"  {attack:<18} " + " ".join(f"eps {e:.4g} {v:.1%}" for e, v in adversarial[attack].items()))
    by_eps_key = {a: {repr(float(e)): v for e, v in by_eps.items()} for a, by_eps in adversarial.items()}
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
            {"autoattack": {"version": "standard", "attacks": list(autoattack.STANDARD), "after": suite_stages}}
            if suite_stages
            else {}
        ),
    }
    suite_checks += masking.pgd_not_weaker_than_autoattack(
        {"adversarial": by_eps_key, "attack_settings": attack_settings}
    )
    masking_result = (
        _masking_checks(cfg, adversarial, per_image, attacked_accuracy, natural, steps, suite_checks, log)
        if cfg.attacks
        else None
    )
    result = {
        "model": train_cfg.model,
        "dataset": train_cfg.dataset,
        "seed": train_cfg.seed,
        "epoch": epoch,
        "weights": run.weights,
        "clean_top1": clean,
        "corruptions": {n: {str(s): v for s, v in sev.items()} for n, sev in corruptions.items()},
        "mean_corruption_top1": float(np.mean([v for sev in corruptions.values() for v in sev.values()]))
        if corruptions
        else None,
        "adversarial": by_eps_key,
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
        "timings": {**timings, "attack_s_by_attack": attack_seconds},
    }
    rows = [{"kind": "clean", "name": "clean", "level": "", "top1": clean}]
    rows += [
        {"kind": "corruption", "name": n, "level": s, "top1": v}
        for n, sev in corruptions.items()
        for s, v in sev.items()
    ]
    rows += [
        {"kind": "adversarial", "name": a, "level": e, "top1": v}
        for a, by_eps in adversarial.items()
        for e, v in by_eps.items()
    ]
    write_csv(run_dir / ROBUSTNESS_CSV, rows, ["kind", "name", "level", "top1"])
    write_npz(run_dir / ROBUSTNESS_NPZ, index=index, **{k.replace("/", "|"): v for k, v in per_image.items()})
    write_json(run_dir / ROBUSTNESS_JSON, result)  # last: a complete robustness.json means complete results
    return result
