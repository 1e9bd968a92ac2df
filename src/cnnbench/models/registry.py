"""A small model registry in the style of torchvision's ``models/_api.py``."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable

import torch
import torch.nn as nn

from ..errors import ConfigError

VARIANTS = ("paper", "small", "auto")
# Inputs of this many pixels or fewer get the small-image variant under variant="auto".
AUTO_SMALL_MAX_PX = 64

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_MIN_INPUT: dict[str, int] = {}


def register_model(name: str, min_input: int = 32) -> Callable:
    """Register ``fn(num_classes, in_chans, variant, **options) -> nn.Module`` under ``name``.

    ``min_input`` is the smallest square input (pixels) the model accepts in every variant.
    """

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = fn
        _MIN_INPUT[name] = min_input
        return fn

    return decorator


def scaled_channels(channels: int, width: float) -> int:
    """A layer's channels in a network ``width`` times as wide (at least one)."""
    return max(1, round(channels * width))


def check_width(width: float) -> None:
    if not width > 0:
        raise ConfigError(f"width multiplies every layer's channels: a number above 0 such as 0.25 (got {width!r}).")


TRAINING_BYTES_PER_PARAMETER = 16  # float32 weights, gradients, momentum and a copy: the least training holds


def _parameters_at(width: float, build: Callable[..., nn.Module]) -> float:
    """The parameter count at ``width``, allocating nothing: counted on the meta device up to a width of 3, beyond
    it extrapolated from widths 1, 2 and 3 (a network's parameters are a quadratic in its width: channels times
    channels; a width of a million would overflow even the meta device's size arithmetic)."""

    def count(w: float) -> int:
        with torch.device("meta"):  # shapes only: nothing is allocated
            return sum(p.numel() for p in build(w).parameters())

    if width <= 3:
        return float(count(width))
    p1, p2, p3 = count(1.0), count(2.0), count(3.0)
    a = (p3 - 2 * p2 + p1) / 2
    b = p2 - p1 - 3 * a
    return a * width**2 + b * width + (p1 - a - b)


def _check_fits(name: str, width: float, build: Callable[..., nn.Module]) -> None:
    """Refuse, in one paragraph, a width whose parameters alone could not be trained in this machine's memory."""
    import psutil

    parameters = _parameters_at(width, build)
    need, have = parameters * TRAINING_BYTES_PER_PARAMETER, psutil.virtual_memory().total
    if need > have:
        raise ConfigError(
            f"--width {width:g} makes {name} a network of about {parameters:.3g} parameters, which needs at least "
            f"{need / 2**30:,.0f} GiB to train (weights, gradients and momentum in float32), more than this "
            f"machine's {have / 2**30:,.0f} GiB of memory. Choose a smaller width (1 is the published network, "
            "0.25 a quarter as wide)."
        )


def width_description(width: float) -> str:
    """A network narrower or wider than published, as tables and logs add it to the variant ('' at width 1)."""
    return f", {width:g}x width" if width != 1 else ""


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted; ``pattern`` is a shell-style filter such as ``"vgg*"``."""
    names = sorted(_MODELS, key=_natural_key)
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def _natural_key(name: str):
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def min_input_size(name: str) -> int:
    check_model_name(name)
    return _MIN_INPUT[name]


def check_model_name(name: str) -> None:
    if name not in _MODELS:
        near = difflib.get_close_matches(name, list(_MODELS), n=1)
        hint = f" Did you mean {near[0]!r}?" if near else ""
        raise ConfigError(
            f"Unknown model {name!r}.{hint} Available models: {', '.join(list_models())}. "
            "Run `cnnbench models` for details."
        )


def resolve_variant(variant: str, image_size: int | None) -> str:
    """Turn "auto" into "small" (inputs <= 64 px) or "paper"; "paper" and "small" pass through."""
    if variant not in VARIANTS:
        raise ConfigError(f"Unknown model variant {variant!r}: choose one of {', '.join(VARIANTS)}.")
    if variant != "auto":
        return variant
    if image_size is None:
        raise ConfigError("variant='auto' needs the input size; pass image_size=... or choose 'paper' or 'small'.")
    return "small" if image_size <= AUTO_SMALL_MAX_PX else "paper"


def create_model(
    name: str,
    num_classes: int = 10,
    in_chans: int = 3,
    variant: str = "auto",
    image_size: int | None = 32,
    width: float = 1.0,
    **options,
) -> nn.Module:
    """Build a registered model.

    ``variant`` is "paper" (as in the original tables: VGG's FC-4096 head, ResNet's 7x7/2 stem and
    max-pool), "small" (one FC after global pooling; 3x3/1 ResNet stem without max-pool) or "auto"
    (small for ``image_size`` <= 64 px, paper above). The resolved variant is stored on the model as
    ``model.variant``. ``width`` multiplies every layer's channels (VGG and ResNet; 1 is the published network).
    """
    check_model_name(name)
    if num_classes < 1 or in_chans < 1:
        raise ConfigError(f"num_classes and in_chans must be positive (got {num_classes}, {in_chans}).")
    resolved = resolve_variant(variant, image_size)
    check_width(width)

    def build(w: float = width) -> nn.Module:  # a model without widths is built without the argument at width 1
        extra = {"width": w} if w != 1 else {}
        return _MODELS[name](num_classes=num_classes, in_chans=in_chans, variant=resolved, **options, **extra)

    try:
        if width > 1:  # counted without memory first: a wide network must not take the machine down to find out
            _check_fits(name, width, build)
        model = build()
    except TypeError as e:
        if "width" not in str(e):
            raise
        raise ConfigError(f"{name} comes in one width only: leave --width at 1 for it.") from None
    model.variant = resolved
    return model


def variant_description(name: str, variant: str) -> str:
    """What a variant means for this model's stem or head, for tables a person reads."""
    if name.startswith("resnet"):
        return {"paper": "7x7/2 stem + max-pool", "small": "3x3/1 stem, no max-pool"}.get(variant, variant)
    if name.startswith("vgg"):
        return {"paper": "FC-4096, FC-4096 head", "small": "global pool + one FC"}.get(variant, variant)
    return variant
