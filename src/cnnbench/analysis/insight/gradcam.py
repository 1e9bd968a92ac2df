"""Grad-CAM (Selvaraju et al., 2017): where in the image a layer's evidence for a class lies.

The layer's activation maps A_k are weighted by the spatial mean of d score_c / d A_k, summed over k and passed
through a ReLU; the map is upsampled to the input size and scaled to [0, 1] per image.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...engine.runtime import eval_mode
from .stages import check_layer


def grad_cam(model: nn.Module, layer: str, x: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
    """Heat maps (N, H, W) in [0, 1] for ``classes`` (default: the predicted class) of the normalised batch ``x``."""
    module = check_layer(model, layer)
    captured: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        with torch.enable_grad(), eval_mode(model):
            x = x.detach().float().requires_grad_(False)
            logits = model(x)
            acts = captured[-1]
            if classes is None:
                classes = logits.argmax(1)
            score = logits.gather(1, classes.view(-1, 1).to(logits.device)).sum()
            (grads,) = torch.autograd.grad(score, acts)
    finally:
        handle.remove()
    weights = grads.float().mean((2, 3), keepdim=True)
    cam = F.relu((weights * acts.detach().float()).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
    return (cam / peak).cpu()
