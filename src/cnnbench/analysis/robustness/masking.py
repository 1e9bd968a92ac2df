"""Checks that an attack's numbers are not an artefact of gradient masking, after Carlini et al. (2019), "On
evaluating adversarial robustness", and AutoAttack's own checks (Croce & Hein, 2020): accuracy must fall as eps
grows and reach about zero at a large eps; more attack steps must not raise accuracy; a black-box attack must not
beat the white-box ones. A failed check does not change a number; it flags the result ("attack may be masked")
with its reason, in robustness.json and in the report."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

# Accuracy may rise by this much (sampling noise on ~1,000 images) before a rise counts as a failed check.
TOLERANCE = 0.01
# At the large eps, a model whose gradients are usable falls to about zero: above this, the attack is suspect.
LARGE_EPS_CEILING = 0.05


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str

    def to_dict(self) -> dict:
        return asdict(self)


def rewrite_eps(text: str, label) -> str:
    """A stored message's eps values (decimals, as the checks write them) as ``label(eps)`` writes them: the report
    says 8/255 on colour images, as everywhere else."""
    return re.sub(r"\beps (\d*\.\d+)", lambda m: f"eps {label(float(m.group(1)))}", text)


def falls_with_eps(attack: str, by_eps: dict[float, float]) -> Check:
    points = sorted(by_eps.items())
    rises = [(a, b) for (a, va), (b, vb) in zip(points, points[1:]) if vb > va + TOLERANCE]
    if rises:
        a, b = rises[0]
        return Check(
            f"{attack} falls with eps",
            False,
            f"{attack} accuracy rose from {by_eps[a]:.1%} at eps {a:.4g} to {by_eps[b]:.1%} at {b:.4g}",
        )
    return Check(f"{attack} falls with eps", True, "accuracy never rises as eps grows")


def near_zero_at_large_eps(attack: str, eps: float, accuracy: float) -> Check:
    ok = accuracy <= LARGE_EPS_CEILING
    detail = f"{attack} leaves {accuracy:.1%} at eps {eps:.4g}" + (
        "" if ok else f", more than {LARGE_EPS_CEILING:.0%}: the gradients may not lead the attack"
    )
    return Check("about zero at a large eps", ok, detail)


def more_steps_not_weaker(steps: int, accuracy: float, more_steps: int, more_accuracy: float, eps: float) -> Check:
    ok = more_accuracy <= accuracy + TOLERANCE
    detail = f"PGD-{more_steps} {more_accuracy:.1%} against PGD-{steps} {accuracy:.1%} at eps {eps:.4g}"
    return Check("more steps are not weaker", ok, detail)


def black_box_not_stronger(black: str, black_acc: float, white: str, white_acc: float, eps: float) -> Check:
    ok = black_acc >= white_acc - TOLERANCE
    detail = f"{black} (black-box) {black_acc:.1%} against {white} {white_acc:.1%} at eps {eps:.4g}"
    return Check("black-box is not stronger than white-box", ok, detail)


def pgd_not_weaker_than_autoattack(result: dict) -> list[Check]:
    """Where PGD and AutoAttack ran at the same eps (robustness.json's "adversarial"): PGD's cross-entropy gradients
    must lead it about as far as AutoAttack goes. When PGD leaves clearly more images correct, its loss was flat for
    it (label smoothing does this to cross-entropy): the PGD number overstates robustness, read AutoAttack's."""
    adversarial = result.get("adversarial") or {}
    pgd, aa = adversarial.get("pgd") or {}, adversarial.get("autoattack") or {}
    settings = result.get("attack_settings") or {}
    name = f"PGD-{settings.get('pgd_steps', '')}" + (
        f"x{settings['pgd_restarts']}" if (settings.get("pgd_restarts") or 1) > 1 else ""
    )
    checks = []
    for eps in sorted(set(pgd) & set(aa), key=float):
        ok = pgd[eps] <= aa[eps] + TOLERANCE
        detail = f"{name} leaves {pgd[eps]:.1%} at eps {float(eps):.4g}, AutoAttack {aa[eps]:.1%}" + (
            "" if ok else ": PGD's gradients do not find what AutoAttack finds, its number overstates robustness"
        )
        checks.append(Check("PGD as strong as AutoAttack", ok, detail))
    return checks


def summary(checks: list[Check]) -> dict:
    """robustness.json's "masking": every check, and the verdict with its reasons."""
    failed = [c for c in checks if not c.passed]
    return {
        "checks": [c.to_dict() for c in checks],
        "suspect": bool(failed),
        # each reason once: several eps or checks can fail the same way
        "verdict": "attack may be masked: " + "; ".join(dict.fromkeys(c.detail for c in failed))
        if failed
        else "no sign of masking",
    }
