"""The papers' configuration tables (VGG's Table 1, ResNet's Table 2) in Markdown, read from the registered
models themselves (paper variants, 224 px, 1,000 classes, on the meta device), so they cannot drift from what
cnnbench trains."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..models import create_model
from ..models.resnet import ARCHS
from ..models.vgg import COLUMNS
from .architecture import layer_table, stage_totals
from .insight.stages import weight_layers

PAPER_INPUT = (3, 224, 224)
PAPER_CLASSES = 1000
TABLES = ("vgg", "resnet")


def _paper_model(name: str) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, num_classes=PAPER_CLASSES, variant="paper")


def depth(model: nn.Module) -> int:
    """Convolutions and fully connected layers on the main path, as the papers count depth (ResNet's 1x1
    projection shortcuts are not counted: ResNet-18 has 18)."""
    return sum("downsample" not in n.split(".") for n, _ in weight_layers(model))


def _params(model: nn.Module) -> str:
    return f"{sum(p.numel() for p in model.parameters()):,}"


def _gmacs(rows) -> str:
    return f"{sum(r.macs for r in rows) / 1e9:.2f} G"


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _vgg_blocks(model: nn.Module) -> list[list[str]]:
    """The layers of each block (up to and excluding its max-pool), named as in the paper: conv3-64, LRN."""
    blocks, current = [], []
    for layer in model.features:
        if isinstance(layer, nn.Conv2d):
            current.append(f"conv{layer.kernel_size[0]}-{layer.out_channels}")
        elif isinstance(layer, nn.LocalResponseNorm):
            current.append("LRN")
        elif isinstance(layer, nn.MaxPool2d):
            blocks.append(current)
            current = []
    return blocks


def vgg_table() -> str:
    names = list(COLUMNS)
    models = [_paper_model(n) for n in names]
    tables = [layer_table(m, PAPER_INPUT) for m in models]
    blocks = [_vgg_blocks(m) for m in models]
    rows = [
        ["model"] + [f"`{n}`" for n in names],
        ["weight layers"] + [str(depth(m)) for m in models],
        ["input"] + ["224 x 224 RGB image"] * len(names),
    ]
    for i in range(len(blocks[0])):
        rows.append([f"block {i + 1}"] + ["<br>".join(b[i]) for b in blocks])
        rows.append([""] + ["maxpool"] * len(names))
    head = [
        "<br>".join(f"FC-{m.out_features}" for m in model.classifier if isinstance(m, nn.Linear)) + "<br>soft-max"
        for model in models
    ]
    rows.append(["head"] + head)
    rows.append(["parameters"] + [_params(m) for m in models])
    rows.append(["MACs"] + [_gmacs(t) for t in tables])
    return _markdown([""] + [f"{COLUMNS[n]}" for n in names], rows)


def _resnet_stage(layer: nn.Sequential) -> str:
    """One stage as the paper writes it: [3x3, 64; 3x3, 64] x 2."""
    block = layer[0]
    convs = [m for n, m in block.named_children() if isinstance(m, nn.Conv2d)]
    inside = "; ".join(f"{c.kernel_size[0]}x{c.kernel_size[1]}, {c.out_channels}" for c in convs)
    return f"[{inside}] x {len(layer)}"


def resnet_table() -> str:
    names = list(ARCHS)
    models = [_paper_model(n) for n in names]
    tables = [layer_table(m, PAPER_INPUT) for m in models]
    sizes = {s["stage"]: "x".join(s["output_shape"].split("x")[-2:]) for s in stage_totals(tables[0])}
    stem = models[0]
    kh, kw = stem.conv1.kernel_size
    conv1 = f"{kh}x{kw}, {stem.conv1.out_channels}, stride {stem.conv1.stride[0]}"
    conv1_size = "x".join(map(str, next(r.output_shape for r in tables[0] if r.name == "conv1")[-2:]))
    rows = [["conv1", conv1_size] + [conv1] * len(names)]
    for i in (1, 2, 3, 4):
        cells = [_resnet_stage(getattr(m, f"layer{i}")) for m in models]
        if i == 1:
            cells = ["3x3 max pool, stride 2<br>" + c for c in cells]
        rows.append([f"conv{i + 1}_x", sizes[f"layer{i}"]] + cells)
    rows.append(["", "1x1"] + [f"average pool, {m.fc.out_features}-d fc, softmax" for m in models])
    rows.append(["parameters", ""] + [_params(m) for m in models])
    rows.append(["MACs", ""] + [_gmacs(t) for t in tables])
    return _markdown(["layer name", "output size"] + [f"`{n}` ({depth(m)}-layer)" for n, m in zip(names, models)], rows)


def paper_table(which: str) -> str:
    return {"vgg": vgg_table, "resnet": resnet_table}[which]()
