"""Starting a model from pretrained weights: torchvision's ImageNet weights, a state_dict file or a cnnbench run.

The body is loaded strictly (every tensor present, every shape equal), the classifier is left new for the data
set's classes, and a grey data set gets the pretrained RGB first convolution summed over its input channels (as
timm does), which answers a grey image exactly as the RGB network answers that image repeated in three channels.
"""

from __future__ import annotations

import urllib.error
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import ConfigError
from ..layout import CHECKPOINTS_DIR, CONFIG_JSON
from .averaging import evaluated_weights
from .run_folder import (
    IMAGENET,
    IMAGENET_MEAN,
    IMAGENET_STD,
    channel_normalization,
    latest_state,
    read_config,
    read_preprocessing,
)


@dataclass(frozen=True)
class PretrainedWeights:
    state_dict: dict[str, torch.Tensor]
    mean: tuple[float, ...]  # the normalisation the weights were trained with, per input channel
    std: tuple[float, ...]
    description: str  # where they came from, for the run's records
    variant: str | None = None  # the cnnbench variant they fit, where known (a cnnbench run)


def classifier_name(model: nn.Module) -> str:
    """The module name of the model's last Linear layer: the classifier that fine-tuning replaces."""
    names = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ConfigError(f"{type(model).__name__} has no Linear classifier to replace, so it cannot be fine-tuned.")
    return names[-1]


def is_head_parameter(name: str, head: str) -> bool:
    return name.startswith(head + ".")


def _torchvision_weights(model_name: str) -> PretrainedWeights:
    import torchvision.models as tvm

    try:
        weights = tvm.get_model_weights(model_name).DEFAULT
    except ValueError:
        with_weights = [n for n in tvm.list_models(module=tvm) if n.startswith(("vgg", "resnet"))]
        raise ConfigError(
            f"torchvision has no ImageNet weights for {model_name} (it has them for "
            f"{', '.join(sorted(with_weights))}). Choose one of those models, or pass --pretrained PATH "
            "to weights of your own."
        ) from None
    try:
        state = weights.get_state_dict(progress=False, check_hash=True)
    except (urllib.error.URLError, OSError, RuntimeError) as e:
        where = Path(torch.hub.get_dir()) / CHECKPOINTS_DIR / Path(weights.url).name
        raise ConfigError(
            f"Could not get torchvision's ImageNet weights for {model_name} ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else 'no details'}). torchvision downloads them once from "
            f"{weights.url} and then reads {where} (the folder follows $TORCH_HOME). Offline, copy that file "
            f"there from a machine that has it, or pass --pretrained PATH to a state_dict file."
        ) from None
    return PretrainedWeights(state, IMAGENET_MEAN, IMAGENET_STD, f"torchvision {weights} (ImageNet)", variant="paper")


def _from_run(run_dir: Path) -> PretrainedWeights:
    config = read_config(run_dir)
    state = latest_state(run_dir)
    prep = read_preprocessing(run_dir, config)
    return PretrainedWeights(
        evaluated_weights(state),
        tuple(prep.mean),
        tuple(prep.std),
        f"cnnbench run {run_dir.name} ({config.model} on {config.dataset}, epoch {state.get('epoch')})",
        variant=config.variant,
    )


def _from_file(path: Path) -> PretrainedWeights:
    if path.parent.name == CHECKPOINTS_DIR and (path.parent.parent / CONFIG_JSON).exists():
        run = _from_run(path.parent.parent)  # a checkpoint of a run: that run's normalisation, this file's weights
    else:
        run = None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickles of other objects, truncated files, not a torch file at all
        raise ConfigError(
            f"Cannot read weights from {path} ({type(e).__name__}: {str(e).splitlines()[0]}). Give a "
            "state_dict saved with torch.save(model.state_dict(), PATH), a cnnbench checkpoint or a "
            "cnnbench run folder."
        ) from None
    state = obj.get("model", obj.get("state_dict", obj)) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(
            f"{path} holds no state_dict (a mapping of parameter names to tensors). Save one with "
            "torch.save(model.state_dict(), PATH)."
        )
    if run is not None:
        return PretrainedWeights(state, run.mean, run.std, f"{path.name} of {run.description}", run.variant)
    # A bare state_dict: torchvision's layout, trained (as torchvision's are) on ImageNet-normalised images.
    return PretrainedWeights(state, IMAGENET_MEAN, IMAGENET_STD, f"state_dict file {path.name}")


def load_pretrained(source: str, model_name: str) -> PretrainedWeights:
    """``imagenet`` (torchvision's weights for ``model_name``), a run folder, a checkpoint or a state_dict file."""
    if source == IMAGENET:
        return _torchvision_weights(model_name)
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / CONFIG_JSON).exists():
            raise ConfigError(
                f"--pretrained {source}: the folder is not a cnnbench run (it has no config.json). Give "
                "a run folder, a weights file, or 'imagenet'."
            )
        return _from_run(path)
    if path.is_file():
        return _from_file(path)
    raise ConfigError(
        f"--pretrained {source}: no such file or folder. Give 'imagenet', a state_dict file, a cnnbench "
        "checkpoint or a cnnbench run folder."
    )


def normalization_for(weights: PretrainedWeights, in_chans: int) -> tuple[list[float], list[float]]:
    """The weights' normalisation for ``in_chans`` input channels: grey input gets the mean of the RGB ones."""
    return channel_normalization(weights.mean, weights.std, in_chans)


def apply_pretrained(model: nn.Module, weights: PretrainedWeights) -> list[str]:
    """Load ``weights`` into ``model`` strictly apart from the classifier, which keeps its fresh initialisation.
    Returns the names of the parameters left new (the classifier's)."""
    head = classifier_name(model)
    target = model.state_dict()
    source = {k: v for k, v in weights.state_dict.items() if not is_head_parameter(k, head)}
    body = {k for k in target if not is_head_parameter(k, head)}
    missing, unexpected = sorted(body - set(source)), sorted(set(source) - body)
    if missing or unexpected:
        listed = lambda names: ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")  # noqa: E731
        raise ConfigError(
            f"The pretrained weights ({weights.description}) do not fit this model"
            + (f": it has {listed(missing)} which they lack" if missing else "")
            + (f"{';' if missing else ':'} they have {listed(unexpected)} which it lacks" if unexpected else "")
            + ". Pretrained weights must come from the same architecture (and variant: --variant paper for "
            "torchvision's)."
        )
    loaded = {}
    for name, value in source.items():
        want = target[name].shape
        if (
            value.shape != want
            and value.ndim == 4
            and value.shape[1] == 3
            and want[1] == 1
            and value.shape[0] == want[0]
            and value.shape[2:] == want[2:]
        ):
            value = value.sum(dim=1, keepdim=True)  # RGB filters on a grey image: the sum sees what RGB saw
        if value.shape != want:
            raise ConfigError(
                f"The pretrained weights ({weights.description}) do not fit this model: {name} is "
                f"{tuple(value.shape)} there and {tuple(want)} here. "
                + (
                    "The first convolution differs: weights for the paper variant (7x7 stem) need --variant paper, "
                    "and a run's weights need that run's variant. "
                    if name.startswith(("conv1", "features.0"))
                    else ""
                )
                + "Pretrained weights must come from the same architecture, at the same --width."
            )
        loaded[name] = value
    model.load_state_dict({**target, **loaded})
    return [k for k in target if is_head_parameter(k, head)]


def freeze_body(model: nn.Module) -> None:
    """Only the classifier learns: every other parameter stops needing gradients."""
    head = classifier_name(model)
    for name, p in model.named_parameters():
        p.requires_grad_(is_head_parameter(name, head))


def keep_frozen_statistics(model: nn.Module) -> None:
    """Batch-norm layers of a frozen body keep their pretrained running statistics (eval mode) while the
    classifier trains: a linear probe reads fixed features."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in m.parameters()):
            m.eval()
