"""AutoAttack's standard suite (Croce & Hein, 2020) through ``pyautoattack``, the authors' reference code on PyPI.

Why that package: it is the reference implementation RobustBench scores with (APGD-CE, APGD-T, FAB-T, Square,
each with the published settings), pure Python with no dependency beyond PyTorch and NumPy. torchattacks ports the
same attacks but pins requests~=2.25 (it would downgrade a user's requests); the Adversarial Robustness Toolbox is
maintained but has no FAB and a different default ensemble. pyautoattack is optional (``cnnbench[attacks]``).

The suite runs as AutoAttack runs it: each attack on the images that survived the ones before, an image robust
only if all four fail. The accuracy after each stage is kept, and AutoAttack's own warnings (zero gradients, a
randomised or non-logit output) become masking checks; evaluate.py adds Square alone against the white-box stages.
"""

from __future__ import annotations

import logging
import re

import numpy as np
import torch
import torch.nn as nn

from ...errors import ConfigError
from .masking import Check

STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")
INSTALL = "pip install 'cnnbench[attacks]'"


def _autoattack_class():
    try:
        from pyautoattack import AutoAttack
    except ImportError:
        raise ConfigError(
            f"--attacks autoattack and square need AutoAttack's reference code, which is not installed: {INSTALL} "
            "(or pip install pyautoattack), then run the command again."
        ) from None
    return AutoAttack


def require() -> None:
    _autoattack_class()


class _Warnings(logging.Handler):
    """Collects what AutoAttack's checks warn about (they log to the "auto-attack" logger)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def run_suite(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    seed: int,
    device: torch.device,
    batch_size: int = 250,
    stages: tuple[str, ...] = STANDARD,
) -> tuple[dict[str, np.ndarray], list[Check]]:
    """Which images stay correct after each stage of the cascade ``stages`` (pixels in [0, 1] on the CPU; ``model``
    returns float32 logits), and AutoAttack's own checks as Check records (failed where it warned)."""
    logits = _logits(model, x, device, batch_size)
    robust, classes = logits.argmax(1) == y, logits.shape[1]
    attack = _autoattack_class()(model, norm="Linf", eps=eps, version="standard", seed=seed, device=device)
    attack.verbose = False
    # APGD-T and FAB-T attack the 9 most likely other classes: a data set with fewer classes has fewer targets
    attack.apgd_targeted.n_target_classes = min(9, classes - 1)
    attack.fab.n_target_classes = min(9, classes - 1)
    handler = _Warnings()
    logger = logging.getLogger("auto-attack")
    logger.addHandler(handler)
    flags = {"clean": robust.numpy().copy()}
    try:
        for stage in stages:
            idx = torch.nonzero(robust).flatten()
            if len(idx):
                attack.attacks_to_run = [stage]
                _, y_adv = attack.run_standard_evaluation(x[idx], y[idx], batch_size=batch_size)
                robust[idx] = y_adv.cpu() == y[idx]
            flags[stage] = robust.numpy().copy()
    finally:
        logger.removeHandler(handler)
    return flags, own_checks(handler.messages)


def own_checks(messages: list[str]) -> list[Check]:
    """AutoAttack's warnings as failed checks, each kind once (it warns per batch, with that batch's counts)."""
    named = (re.sub(r"(?<!AutoAttack's )flags_doc\.md", "AutoAttack's flags_doc.md", m) for m in messages)
    kinds = {re.sub(r"\d+", "N", m): m for m in named}
    return [Check("AutoAttack's own checks", False, m) for m in kinds.values()]


def _logits(model: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int) -> torch.Tensor:
    """The model's logits for ``x`` on the CPU, a batch at a time."""
    with torch.no_grad():
        return torch.cat([model(x[a : a + batch_size].to(device)).cpu() for a in range(0, len(x), batch_size)])
