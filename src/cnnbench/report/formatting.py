"""How the report and comparison.md write numbers: percentages with their spread, the study's m'ss'' times,
millions, rates, eps as k/255."""

from __future__ import annotations


def pct(mean: float, std: float | None = None) -> str:
    return f"{mean:.2%}" + (f" ± {std * 100:.2f}" if std else "")


def minutes(seconds: float) -> str:
    """m'ss'' as the study prints training times; under a second says so instead of 0'00''."""
    if seconds < 0.5:
        return "under 1 s"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}'{s:02d}''"


def millions(n: float) -> str:
    return f"{n / 1e6:.2f} M"


def rate(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def megabytes(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f} MB"


def top1_cell(row: dict) -> str:
    """Top-1 with its uncertainty: one seed, the Wilson interval on the test set's size; several, ± std over seeds,
    the t-interval of the mean and the range."""
    if row["test_top1_mean_ci_low"] is None:
        return f"{pct(row['test_top1'])} [{row['test_top1_ci_low']:.2%}, {row['test_top1_ci_high']:.2%}]"
    return (
        f"{pct(row['test_top1'], row['test_top1_std'])} [{row['test_top1_mean_ci_low']:.2%}, "
        f"{row['test_top1_mean_ci_high']:.2%}] ({row['test_top1_min']:.2%} to {row['test_top1_max']:.2%})"
    )


TOP1_LEGEND = (
    "Top-1 is measured on the test set, once, at the last epoch. One seed: [95% Wilson interval for a test set "
    "of this size]; several seeds: ± standard deviation over seeds (percentage points), [95% t-interval of "
    "the mean over seeds] and (lowest to highest seed)."
)


def eps_label(eps: float, natural: bool) -> str:
    """eps as the literature writes it: a fraction of 255 for natural images (8/255), decimals for digits (0.3)."""
    steps = eps * 255
    if natural and eps > 0 and abs(steps - round(steps)) < 1e-3:
        return f"{round(steps)}/255"
    return f"{eps:.4g}"
