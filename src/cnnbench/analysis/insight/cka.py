"""Linear centred kernel alignment (Kornblith et al., 2019): how similar two layers' representations of the same
images are, invariant to orthogonal transforms and isotropic scaling, comparable across layers of any width.

Computed from the n x n Gram matrices, so layers with 65,536 features per image cost no more than narrow ones.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from ...data.loader import normalize
from ...engine.runtime import eval_mode


def centred_gram(features: torch.Tensor) -> torch.Tensor:
    """The doubly centred linear Gram matrix H X X^T H of (n, ...) features, in float64."""
    x = features.flatten(1).double()
    x = x - x.mean(0, keepdim=True)  # centring the features centres the Gram matrix on both sides
    return x @ x.T


def cka_from_grams(k: torch.Tensor, m: torch.Tensor) -> float:
    hsic = (k * m).sum()
    return float(hsic / (k.norm() * m.norm()).clamp_min(1e-300))


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two representations of the same n examples, (n, ...) each."""
    return cka_from_grams(centred_gram(x), centred_gram(y))


@torch.inference_mode()
def stage_grams(
    model: nn.Module, layers: list[str], images: torch.Tensor, data, batch_size: int = 250
) -> dict[str, torch.Tensor]:
    """Centred Gram matrices of each named layer's output on ``images`` (uint8, on the model's device, as ``data``'s
    statistics), in eval mode, fp32."""
    modules = dict(model.named_modules())
    outputs: dict[str, list[torch.Tensor]] = {n: [] for n in layers}
    handles = [
        modules[n].register_forward_hook(lambda _m, _i, out, n=n: outputs[n].append(out.float().flatten(1).cpu()))
        for n in layers
    ]
    try:
        with eval_mode(model):
            for start in range(0, len(images), batch_size):
                model(normalize(images[start : start + batch_size], data.mean, data.std, False))
    finally:
        for h in handles:
            h.remove()
    return {n: centred_gram(torch.cat(outputs[n])) for n in layers}


def cka_matrix(grams_a: dict[str, torch.Tensor], grams_b: dict[str, torch.Tensor]) -> np.ndarray:
    """CKA between every layer of ``grams_a`` (rows) and every layer of ``grams_b`` (columns)."""
    return np.array([[cka_from_grams(ka, kb) for kb in grams_b.values()] for ka in grams_a.values()])
