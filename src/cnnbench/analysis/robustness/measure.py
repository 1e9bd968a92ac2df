"""The measurements of ``cnnbench robustness``: one run's chosen test images clean, corrupted and attacked, with
what they share (the model in pixel space, which images each cell got right, the time spent on each kind)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch

from ...engine.runtime import autocast, duration_text, synchronize
from . import autoattack, masking
from .attacks import PixelModel, fgsm, pgd


@dataclass(frozen=True)
class AttackSettings:
    eps: tuple[float, ...]  # L-inf radii in pixel units ([0, 1] scale)
    step: float | None  # PGD step; None: eps / 4
    steps: int  # PGD iterations


class Measurement:
    """Accuracy of one model on the same test images (``index``) under each condition. ``per_image`` records which
    images each reported cell got right (robustness.npz, for paired tests); a masking check's extra attacks, on
    the first images only, are not recorded there."""

    def __init__(
        self,
        pixel_model: PixelModel,
        test_x: torch.Tensor,
        labels: np.ndarray,
        index: np.ndarray,
        device: torch.device,
        precision: str,
        batch_size: int,
        seed: int,
        log: Callable[[str], None],
    ):
        self.pixel_model, self.test_x, self.index = pixel_model, test_x, index
        self.device, self.precision, self.batch_size, self.seed, self.log = device, precision, batch_size, seed, log
        self.y_all = torch.from_numpy(labels[index]).long()
        self.per_image: dict[str, np.ndarray] = {}
        self.timings = {"corrupt_s": 0.0, "evaluate_s": 0.0, "attack_s": 0.0}
        self.suite_stages: dict[str, dict[str, float]] = {}  # AutoAttack: accuracy after each of its attacks, per eps
        self.suite_checks: list[masking.Check] = []  # what AutoAttack's own checks warned about
        self.generator = torch.Generator().manual_seed(seed)

    def spans(self) -> list[tuple[int, int]]:
        n = len(self.index)
        return [(s, min(s + self.batch_size, n)) for s in range(0, n, self.batch_size)]

    def pixels(self, a: int, b: int) -> torch.Tensor:
        """Images a to b of the chosen ones, as floats in [0, 1] on the device."""
        return (self.test_x[self.index[a:b]].float() / 255).to(self.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.precision):
            return self.pixel_model(x)

    def attack_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attacks run in float32 whatever the training precision: a coarser forward pass can hide the gradient
        an attack follows (and report more robustness than the model has)."""
        return self.pixel_model(x).float()

    def accuracy(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], key: str) -> float:
        right = []
        for x_uint8, y in batches:
            start = time.perf_counter()
            with torch.inference_mode():
                x = x_uint8.to(self.device).float() / 255
                right.append((self.forward(x).argmax(1).cpu() == y).numpy())
            synchronize(self.device)
            self.timings["evaluate_s"] += time.perf_counter() - start
        self.per_image[key] = np.concatenate(right)
        return float(self.per_image[key].mean())

    def clean(self) -> float:
        return self.accuracy(((self.test_x[self.index[a:b]], self.y_all[a:b]) for a, b in self.spans()), "clean")

    def corruptions(self, names: list[str], severities: tuple[int, ...], source) -> dict[str, dict[int, float]]:
        """Accuracy per corruption and severity, the corrupted images made (or read) batch by batch."""
        result: dict[str, dict[int, float]] = {}
        started = time.perf_counter()
        for done, name in enumerate(names):
            if done == 1:  # one corruption measured: enough to say how long the rest will take
                each = time.perf_counter() - started
                self.log(f"  about {duration_text(each * (len(names) - 1))} for the other {len(names) - 1} corruptions")

            def cells(severity, name=name):
                for a, b in self.spans():
                    start = time.perf_counter()
                    x = source.cell(name, severity, a, b)
                    self.timings["corrupt_s"] += time.perf_counter() - start
                    yield x, self.y_all[a:b]

            result[name] = {s: self.accuracy(cells(s), f"corruption/{name}/{s}") for s in severities}
            self.log(f"  {name:<18} " + " ".join(f"s{s} {v:.1%}" for s, v in result[name].items()))
        return result

    def seconds_per_gradient(self) -> float:
        """One input gradient of a batch, per image: the unit an attack's cost is counted in."""
        x = self.pixels(0, self.batch_size)
        start = time.perf_counter()
        fgsm(self.attack_forward, x, self.y_all[: len(x)].to(self.device), 0.01)
        synchronize(self.device)
        return (time.perf_counter() - start) / len(x)

    def suite_accuracy(self, attack: str, eps: float, images: int | None) -> float:
        """AutoAttack's standard suite, or its Square attack alone, through the authors' code."""
        n = len(self.index) if images is None else min(images, len(self.index))
        stages = autoattack.STANDARD if attack == "autoattack" else ("square",)
        start = time.perf_counter()
        flags, checks = autoattack.run_suite(
            self.pixel_model, self.test_x[self.index[:n]].float() / 255, self.y_all[:n], eps, self.seed,
            self.device, self.batch_size, stages,
        )  # fmt: skip
        synchronize(self.device)
        self.timings["attack_s"] += time.perf_counter() - start
        if images is None:  # a reported cell
            self.per_image[f"{attack}/{eps!r}"] = flags[stages[-1]]
            if attack == "autoattack":
                self.per_image[f"autoattack-white-box/{eps!r}"] = flags["fab-t"]
                self.suite_stages[repr(float(eps))] = {k: float(v.mean()) for k, v in flags.items()}
            self.suite_checks[:] = autoattack.own_checks([c.detail for c in self.suite_checks + checks])
        return float(flags[stages[-1]].mean())

    def attacked_accuracy(
        self, attack: str, eps: float, settings: AttackSettings, n_steps: int, restarts: int, images: int | None = None
    ) -> float:
        """Accuracy under the attack on the chosen images (the first ``images`` of them where given)."""
        if attack in ("autoattack", "square"):
            return self.suite_accuracy(attack, eps, images)
        right, seen, kept = 0, 0, []
        start = time.perf_counter()
        for a, b in self.spans():
            if images is not None:
                b = min(b, images)
                if a >= b:
                    break
            x, y = self.pixels(a, b), self.y_all[a:b].to(self.device)
            if attack == "fgsm":
                survived = self.attack_forward(fgsm(self.attack_forward, x, y, eps)).argmax(1) == y
            else:  # an image is robust only if every random start fails to flip it
                survived = torch.ones_like(y, dtype=torch.bool)
                for _ in range(restarts):
                    adv = pgd(self.attack_forward, x, y, eps, settings.step or eps / 4, n_steps, self.generator)
                    with torch.inference_mode():
                        survived &= self.attack_forward(adv).argmax(1) == y
            right += int(survived.sum())
            seen += len(y)
            kept.append(survived.cpu().numpy())
        synchronize(self.device)
        self.timings["attack_s"] += time.perf_counter() - start
        if images is None:  # a reported cell, not a masking check's
            self.per_image[f"{attack}/{eps!r}"] = np.concatenate(kept)
        return right / seen
