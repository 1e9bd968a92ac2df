"""A model's stages (stem, the resolution blocks, the head), found from its modules so any registered model has them.

The stages give the insight tools their layers: dead units are counted per stage, feature maps and CKA are taken
at each stage's output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from ...engine.runtime import eval_mode


@dataclass(frozen=True)
class Stage:
    name: str  # e.g. "stem", "layer1", "block3"
    output: str  # the module whose output is the stage's output
    members: tuple[str, ...]  # module-name prefixes belonging to the stage


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def model_stages(model: nn.Module) -> list[Stage]:
    """Stages of a ResNet (stem, layer1..4), a VGG (one block per max-pool) or, for any other model, its
    top-level children that hold a convolution."""
    children = dict(model.named_children())
    if all(f"layer{i}" in children for i in (1, 2, 3, 4)) and "conv1" in children:
        stem = tuple(n for n in ("conv1", "bn1", "relu", "maxpool") if n in children)
        return [Stage("stem", stem[-1], stem)] + [Stage(f"layer{i}", f"layer{i}", (f"layer{i}",)) for i in (1, 2, 3, 4)]
    features = children.get("features")
    if isinstance(features, nn.Sequential):
        stages, members = [], []
        for index, layer in features.named_children():
            members.append(f"features.{index}")
            if isinstance(layer, nn.MaxPool2d):
                stages.append(Stage(f"block{len(stages) + 1}", members[-1], tuple(members)))
                members = []
        if members:
            stages.append(Stage(f"block{len(stages) + 1}", members[-1], tuple(members)))
        return stages
    return [Stage(n, n, (n,)) for n, m in children.items() if any(isinstance(x, nn.Conv2d) for x in m.modules())]


HEAD = "head"  # layers after the last stage (the classifier)


def stage_of(module_name: str, stages: list[Stage]) -> str:
    for stage in stages:
        if any(_within(module_name, p) for p in stage.members):
            return stage.name
    return HEAD


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every convolution and linear layer, in definition order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    return next((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))


def first_filters(model: nn.Module) -> np.ndarray:
    """A float32 copy of the first convolution's weights (a snapshot: later steps do not change it)."""
    return first_conv(model)[1].weight.detach().float().cpu().numpy().copy()


def default_cam_layer(model: nn.Module, example: torch.Tensor) -> str:
    """The last module (in execution order) whose output is still a spatial map larger than 1x1: the last
    convolutional stage's output where it keeps resolution (ResNet18's layer4 at 4x4 on 32 px), else the last
    activation before the pooling that flattens it (VGG's last ReLU at 2x2)."""
    order: list[str] = []
    names = {m: n for n, m in model.named_modules() if n}
    hooks = [
        m.register_forward_hook(
            lambda mod, _i, out: (
                order.append(names[mod])
                if isinstance(out, torch.Tensor) and out.ndim == 4 and out.shape[-1] * out.shape[-2] > 1
                else None
            )
        )
        for m in names
    ]
    try:
        with torch.no_grad(), eval_mode(model):
            model(example[:1])
    finally:
        for h in hooks:
            h.remove()
    if not order:
        raise ValueError("the model has no layer with a spatial output larger than 1x1 for this input size")
    return order[-1]


def check_layer(model: nn.Module, name: str) -> nn.Module:
    from ...errors import ConfigError, did_you_mean

    modules = dict(model.named_modules())
    if name not in modules or not name:
        valid = [n for n in modules if n]
        raise ConfigError(
            f"The model has no layer {name!r}{did_you_mean(name, valid)}. Valid layers: {', '.join(valid)}."
        )
    return modules[name]
