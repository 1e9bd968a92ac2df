"""Where a model's parameters, computation and activation memory sit, layer by layer and stage by stage.

Read from the model itself: forward hooks record every layer's output, the same FlopCounterMode that
``count_flops`` (and so ``cnnbench profile``) uses counts its work, and everything runs on the meta device, so
even the 224 px paper variants cost no memory or time.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from ..engine.runtime import eval_mode
from ..errors import ConfigError
from ..models import create_model, min_input_size
from ..models.registry import resolve_variant
from .insight.stages import HEAD, model_stages, stage_of

LAYER_COLUMNS = ["name", "type", "stage", "output_shape", "params", "macs", "activation_bytes"]
OUTSIDE = "(outside any layer)"  # the row of work a model's forward() does itself (a functional call, a bare parameter)
ACTIVATION_BYTES = 4  # float32 activations: the memory a layer's output takes in eval at batch 1


@dataclass(frozen=True)
class LayerRow:
    name: str  # module name, e.g. layer1.0.conv1 (a module called twice, such as a shared ReLU, has two rows)
    type: str  # module class, e.g. Conv2d
    stage: str  # stem, layer1..4 / block1..5, head
    output_shape: tuple[int, ...]  # at batch 1
    params: int  # the module's own parameters (counted on its first call only)
    macs: int  # multiply-accumulates of this call
    activation_bytes: int  # its output at batch 1, float32 (0 for in-place layers: they reuse their input's)

    def to_dict(self) -> dict:
        """A flat record for CSV and JSON: the shape written as 1x64x32x32."""
        return {**asdict(self), "output_shape": "x".join(map(str, self.output_shape))}


def _counted_modules(model: nn.Module) -> dict[nn.Module, str]:
    """Leaves, and any module with parameters of its own: every parameter then sits in exactly one row. The model
    itself is counted too, for what its forward() does outside any submodule (its row is kept only if not empty)."""
    counted = {
        m: n
        for n, m in model.named_modules()
        if n and (not any(m.children()) or any(True for _ in m.parameters(recurse=False)))
    }
    return {**counted, model: OUTSIDE}


@torch.no_grad()
def layer_table(model: nn.Module, input_shape: tuple[int, int, int]) -> list[LayerRow]:
    """One row per layer call in execution order, for one image of shape C x H x W (eval mode)."""
    counted = _counted_modules(model)
    stages = model_stages(model)
    device = next(model.parameters()).device
    calls: list[tuple[nn.Module, tuple[int, ...], int]] = []  # (module, output shape, FLOPs) per call
    counter = FlopCounterMode(display=False)
    open_calls: list[list[int]] = []  # per running call: FLOPs when it started, FLOPs of counted calls inside it

    def before(_module, _inputs):
        open_calls.append([counter.get_total_flops(), 0])

    def after(module, _inputs, output):
        start, inside = open_calls.pop()
        spent = counter.get_total_flops() - start
        if open_calls:
            open_calls[-1][1] += spent
        calls.append((module, tuple(output.shape) if isinstance(output, torch.Tensor) else (), spent - inside))

    hooks = [h for m in counted for h in (m.register_forward_pre_hook(before), m.register_forward_hook(after))]
    try:
        with eval_mode(model), counter:
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        for h in hooks:
            h.remove()
    rows, seen = [], set()
    for module, shape, flops in calls:
        name = counted[module]
        params = 0 if module in seen else sum(p.numel() for p in module.parameters(recurse=False))
        if module is model:
            if params or flops:
                rows.append(LayerRow(name, type(module).__name__, HEAD, (), params, int(flops) // 2, 0))
            continue
        seen.add(module)
        numel = math.prod(shape) if shape else 0
        rows.append(
            LayerRow(
                name,
                type(module).__name__,
                stage_of(name, stages),
                shape,
                params,
                int(flops) // 2,
                0 if getattr(module, "inplace", False) else numel * ACTIVATION_BYTES,
            )
        )
    return rows


def model_layer_table(
    name: str,
    variant: str = "auto",
    input_shape: tuple[int, int, int] = (3, 32, 32),
    num_classes: int = 10,
    width: float = 1.0,
) -> tuple[str, list[LayerRow]]:
    """The resolved variant and layer table of a registered model, built on the meta device."""
    need = min_input_size(name)  # also refuses an unknown name, with the nearest one
    if min(input_shape[1:]) < need:
        raise ConfigError(
            f"{name} needs inputs of at least {need}x{need} pixels (it halves the image five times); "
            f"got {input_shape[1]}x{input_shape[2]}. Give a larger --input, e.g. {input_shape[0]}x{need}x{need}."
        )
    variant = resolve_variant(variant, max(input_shape[1:]))
    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes, in_chans=input_shape[0], variant=variant, width=width)
    return variant, layer_table(model, input_shape)


def stage_totals(rows: list[LayerRow]) -> list[dict]:
    """Parameters, MACs and activation memory per stage, in execution order (the head last), with the stage's
    last output shape and the resolution its convolutions work at (``works_at``; empty for the head)."""
    order = list(dict.fromkeys(r.stage for r in rows if r.stage != HEAD)) + [HEAD]
    totals = {
        s: {"stage": s, "params": 0, "macs": 0, "activation_bytes": 0, "output_shape": "", "works_at": ""}
        for s in order
    }
    for r in rows:
        t = totals[r.stage]
        if not t["works_at"] and r.macs and len(r.output_shape) == 4:  # the resolution its first convolution makes
            t["works_at"] = f"{r.output_shape[2]}x{r.output_shape[3]}"
        t["params"] += r.params
        t["macs"] += r.macs
        t["activation_bytes"] += r.activation_bytes
        t["output_shape"] = "x".join(map(str, r.output_shape))  # the stage's last output
    return [t for t in totals.values() if t["params"] or t["macs"] or t["activation_bytes"]]


def grand_total(rows: list[LayerRow]) -> dict:
    return {
        "params": sum(r.params for r in rows),
        "macs": sum(r.macs for r in rows),
        "activation_bytes": sum(r.activation_bytes for r in rows),
    }


def where_computation_goes(model: str, stages: list[dict]) -> str:
    """One sentence, computed from the numbers: the stage with most MACs, and the share of the stages up to and
    including it (for VGG, its full-resolution blocks; for ResNet, the stem and first stages)."""
    total_macs = sum(s["macs"] for s in stages) or 1
    total_params = sum(s["params"] for s in stages) or 1
    top = max(stages, key=lambda s: s["macs"])
    heaviest_params = max(stages, key=lambda s: s["params"])
    first_two = stages[:2]
    return (
        f"{model}: {top['macs'] / total_macs:.0%} of its {total_macs / 1e6:,.0f} M MACs sit in {top['stage']} "
        f"({'at ' + top['works_at'] if top['works_at'] else 'the classifier'}); its first two stages "
        f"({', '.join(s['stage'] for s in first_two)}) do "
        f"{sum(s['macs'] for s in first_two) / total_macs:.0%} of the work with "
        f"{sum(s['params'] for s in first_two) / total_params:.1%} of the parameters, while "
        f"{heaviest_params['stage']} holds {heaviest_params['params'] / total_params:.0%} of them."
    )
