"""Run configuration: one frozen dataclass, saved into every run folder, loadable from JSON or YAML."""

from __future__ import annotations

import dataclasses
import json
import math
import reprlib
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .data.options import DataOptions
from .errors import ConfigError, did_you_mean

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("onecycle", "cosine", "step", "constant")
LR_UPDATES = ("step", "epoch")  # how often the schedule moves the learning rate
DECAY_TARGETS = ("weights", "all")  # which parameters weight decay applies to
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda", "mps")  # mps: Apple-silicon GPUs
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs", "max-autotune")  # torch.compile's modes
_DATA = DataOptions()  # the data options' defaults live there; the fields below of the same names read them


@dataclass(frozen=True)
class Range:
    """The values a numeric option accepts: from ``low`` to ``high`` (None: unbounded), each end included unless
    open; ``advice`` ends the error message where a plain range would leave the user guessing."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    advice: str = ""

    def holds(self, value: float) -> bool:
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def text(self) -> str:
        """The range in words, as --help and the error show it: "in [0, 1)", "at least 1", "more than 0"."""
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'more than' if self.low_open else 'at least'} {self.low:g}"
        return f"{'less than' if self.high_open else 'at most'} {self.high:g}"


AT_LEAST_0 = Range(0)
AT_LEAST_1 = Range(1)
FRACTION_BELOW_1 = Range(0, 1, high_open=True)


def option(
    default: Any,
    help: str,
    choices: tuple | None = None,
    metavar: str | None = None,
    cli: bool = True,
    range: Range | None = None,
):
    """A TrainConfig field and its one description: `--help`, the docs' option table, validation and error messages
    all read its help, choices, range and metavar from here (cli/common.add_train_options generates the flags)."""
    return dataclasses.field(
        default=default,
        metadata={"help": help, "choices": choices, "metavar": metavar, "cli": cli, "range": range},
    )


@dataclass(frozen=True)
class TrainConfig:
    model: str = option("vgg16_bn", "a name from `cnnbench models`", cli=False)
    dataset: str = option("mnist", "a name from `cnnbench datasets`, or imagefolder:PATH", cli=False)
    variant: str = option(  # models.VARIANTS (config cannot import models at load: a test keeps them equal)
        "auto",
        "paper: as in the original tables; small: CIFAR-style stem/head; auto: small for inputs <= 64 px",
        choices=("paper", "small", "auto"),
    )
    width: float = option(1.0, "every layer's channels times this (0.25: a quarter as wide; 1: as published)")
    epochs: int = option(2, "passes over the training data", range=AT_LEAST_1)
    batch_size: int = option(
        128,
        "images per step (per process under torchrun)",
        range=Range(2, advice="batch norm cannot train on one image, so every batch would be skipped"),
    )
    lr: float = option(
        0.1, "peak learning rate", range=Range(0, low_open=True, advice="try 0.05 for SGD or 1e-3 for Adam")
    )  # used as given: it suits batch 128, scale it with the batch
    optimizer: str = option("sgd", "sgd, adam or adamw", choices=OPTIMIZERS)
    momentum: float = option(0.9, "SGD momentum", range=FRACTION_BELOW_1)
    nesterov: bool = option(True, "SGD with Nesterov momentum (--no-nesterov: plain momentum)")
    schedule: str = option("onecycle", "learning-rate schedule", choices=SCHEDULES)  # onecycle: linear up, down
    warmup_fraction: float = option(0.25, "share of steps warming up (onecycle, cosine)", range=FRACTION_BELOW_1)
    lr_update: str = option(
        "step", "move the learning rate after every step or once per epoch", choices=LR_UPDATES
    )  # epoch: PyTorch's schedulers as most published scripts call them
    weight_decay: float = option(5e-4, "L2 penalty (decoupled for adamw)", range=AT_LEAST_0)
    decay: str = option(
        "weights", "weights: decay conv/linear weights only; all: every parameter", choices=DECAY_TARGETS
    )
    label_smoothing: float = option(0.1, "cross-entropy label smoothing", range=FRACTION_BELOW_1)
    augment: bool = option(True, "random crop, plus flips for natural images")
    crop_padding: int = option(4, "pixels the random crop may shift by", range=AT_LEAST_0)
    cutout: int = option(
        0,
        "side in pixels of a square blanked at a random place in every training image (0: off)",
        metavar="PIXELS",
        range=AT_LEAST_0,
    )
    ema: float = option(
        0.0,
        "evaluate a moving average of the weights with this decay per step (e.g. 0.999; 0: off)",
        metavar="DECAY",
        range=Range(0, 1, high_open=True, advice="the moving average's decay per step, such as 0.999 (0: off)"),
    )
    seed: int = option(0, "seeds weights, shuffling and augmentation")
    deterministic: bool = option(False, "deterministic kernels: bit-identical reruns on CPU")
    precision: str = option("auto", "auto: bf16 where the hardware runs it fast", choices=PRECISIONS)
    device: str = option("auto", "auto: a CUDA GPU, else an Apple GPU (mps), else the CPU", choices=DEVICES)
    channels_last: bool = option(True, "NHWC memory format for convolutions")
    small_map_matmul: bool = option(
        True,
        "on a CPU, 3x3 convolutions on 2x2 maps from 256 input channels (and in bf16 on 4x4 maps from 256 in x 512 "
        "out) run as one matmul, where oneDNN is slow (a vgg16_bn step 1.47x faster in bf16); "
        "--no-small-map-matmul: PyTorch's own convolutions everywhere",
    )
    compile: bool = option(
        False, "torch.compile the model (before the first epoch, timed as compile_s; eager if it fails)"
    )
    compile_mode: str = option(
        "default", "reduce-overhead captures CUDA graphs (small batches without launch overhead)", choices=COMPILE_MODES
    )
    threads: int | None = option(None, "CPU threads for PyTorch", range=AT_LEAST_1)
    data_dir: str | None = option(None, "data root")
    download: bool = option(_DATA.download, "let torchvision download missing data sets")
    limit_train: int | None = option(
        _DATA.limit_train, "class-balanced slice of the training split (images)", range=AT_LEAST_1
    )
    limit_test: int | None = option(
        _DATA.limit_test, "class-balanced slice of the test split (images)", range=AT_LEAST_1
    )
    val_split: int = option(
        _DATA.val_split, "training images held out for validation (class-balanced)", range=AT_LEAST_0
    )
    test_split: float | None = option(
        _DATA.test_split,
        "share of each class held out for testing, for an image folder of class folders only (fixed seed: the same "
        "images for every model)",
        metavar="FRACTION",
        range=Range(0, 1, low_open=True, high_open=True),
    )
    # MNIST's 28 px to 32
    pad_to: int | None = option(_DATA.pad_to, "zero-pad smaller images to this size", range=AT_LEAST_1)
    resize: int | None = option(_DATA.resize, "resize images (bilinear) to this square size first", range=AT_LEAST_1)
    # a tuning trial: validation stands in for the test split (set by --tune, never by a user)
    trial: bool = option(_DATA.trial, "a tuning trial, scored on validation", cli=False)
    eval_batch_size: int = option(512, "images per evaluation batch", range=AT_LEAST_1)
    check_every: int | None = option(
        None, "steps between checks that the loss is finite (each waits for a GPU)", range=AT_LEAST_1
    )
    precise_bn: int = option(
        4096,
        "before each evaluation, recompute batch-norm statistics on this many training images (at most a tenth of "
        "them; 0: off)",
        metavar="IMAGES",
        range=AT_LEAST_0,
    )
    pretrained: str | None = option(
        None,
        "start from weights and replace the classifier: imagenet (torchvision's weights for the paper variants; "
        "ImageNet normalisation) or PATH (a state_dict file, a cnnbench checkpoint or run folder)",
        metavar="imagenet|PATH",
    )
    backbone_lr_scale: float = option(
        0.1,
        "with --pretrained: the pretrained body learns at --lr times this, the new classifier at --lr",
        range=Range(0, low_open=True, advice="to keep the pretrained body fixed, use --freeze-backbone"),
    )
    freeze_backbone: bool = option(False, "with --pretrained: train the new classifier only (a linear probe)")

    def data_options(self) -> DataOptions:
        """The data options of a run: this config's fields of DataOptions' names."""
        return DataOptions(**{f.name: getattr(self, f.name) for f in fields(DataOptions)})

    def replace(self, **changes) -> TrainConfig:
        return validate(dataclasses.replace(self, **changes))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELD_NAMES = tuple(f.name for f in fields(TrainConfig))
INTERNAL_FIELDS = ("trial",)  # set by cnnbench itself (a study's tuning phase), never a command-line option
# Settings that change how a run goes (speed, where the data lives, how often the loss is checked), not what it
# learns: a resumed run may change them, and runs differing only in them share one row of a comparison.
# small_map_matmul and threads change only the order in which a sum's terms are added.
RESULT_NEUTRAL_FIELDS = ("threads", "data_dir", "download", "check_every", "small_map_matmul")
# What a run made before an option existed did, where that differs from the option's default today.
LEGACY_VALUES = {"precise_bn": 0, "small_map_matmul": False}


def saved_config_values(saved: dict[str, Any]) -> dict[str, Any]:
    """Every field of a saved run's config: a field the saved config lacks comes from a run made before that
    option existed, which did what LEGACY_VALUES says, else what the default is today."""
    return {**TrainConfig().to_dict(), **LEGACY_VALUES, **saved}


# Fields that may differ between an interrupted run and its resumption: they do not change the result's meaning.
RESUMABLE_CHANGES = RESULT_NEUTRAL_FIELDS + ("device", "compile", "compile_mode")


def config_differences(saved: dict, current: TrainConfig) -> str:
    """The settings that differ between a saved run's config and ``current`` (as 'key: old -> new', comma
    separated), leaving out the ones a run may change (RESUMABLE_CHANGES) and those ``current`` leaves on auto.

    A setting the saved config lacks comes from a run made before that option existed (config.saved_config_values).
    """
    now = current.to_dict()
    before = saved_config_values(saved)
    diffs = [k for k in now if k not in RESUMABLE_CHANGES and now[k] != "auto" and before[k] != now[k]]
    return ", ".join(f"{k}: {before[k]!r} -> {now[k]!r}" for k in diffs)


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"Invalid {name} {value!r}: choose one of {', '.join(choices)}.")


def validate(cfg: TrainConfig) -> TrainConfig:
    """Check every field; raise ConfigError naming the field, the bad value and what is allowed."""
    from .models import registry

    for f in fields(cfg):
        value = getattr(cfg, f.name)
        _coerce(f.name, value)  # every field has its annotated type, whoever built the config
        if _FIELD_TYPES[f.name][0] is float and not math.isfinite(value if value is not None else 0.0):
            raise ConfigError(
                f"{f.name} must be a finite number (got {value!r}); give a plain number such as "
                f"{getattr(TrainConfig(), f.name)!r}, its default."
            )
    registry.check_model_name(cfg.model)
    for f in fields(cfg):  # a field with choices or a range (config.option) keeps to them
        if f.metadata.get("choices"):
            _choice(f.name, getattr(cfg, f.name), f.metadata["choices"])
        value, allowed = getattr(cfg, f.name), f.metadata.get("range")
        if allowed is not None and value is not None and not allowed.holds(value):
            advice = f": {allowed.advice}" if allowed.advice else ""
            raise ConfigError(f"{f.name} must be {allowed.text()} (got {value!r}){advice}.")
    registry.check_width(cfg.width)
    if cfg.pretrained == "imagenet" and cfg.width != 1:  # a run's or a file's weights may have any width
        raise ConfigError(
            "ImageNet weights fit the network at its published width only: leave --width at 1 with --pretrained "
            "imagenet (weights from a run of the same width, --pretrained RUN_DIR, fit any width)."
        )
    if cfg.trial and not cfg.val_split:
        raise ConfigError("A tuning trial is scored on validation images only: it needs --val-split N (N > 0).")
    if cfg.pretrained is not None and not str(cfg.pretrained).strip():
        raise ConfigError(
            "pretrained must be 'imagenet' or the path of a weights file or run folder (got an empty value)."
        )
    if cfg.freeze_backbone and cfg.pretrained is None:
        raise ConfigError(
            "--freeze-backbone keeps pretrained weights fixed, but no --pretrained weights were given: "
            "pass --pretrained imagenet or --pretrained PATH, or drop --freeze-backbone."
        )
    return cfg


def _field_types() -> dict[str, tuple[type, bool]]:
    """Each field's base type and whether it may be None, from the real annotations (not their strings)."""
    types = {}
    for name, hint in typing.get_type_hints(TrainConfig).items():
        args = typing.get_args(hint)
        optional = type(None) in args
        base = next((a for a in args if a is not type(None)), hint) if args else hint
        types[name] = (base, optional)
    return types


_FIELD_TYPES = _field_types()


def field_type(name: str) -> type:
    """The type a TrainConfig field holds (int, float, bool or str), None aside."""
    return _FIELD_TYPES[name][0]


_TYPE_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}


def short_repr(value: Any, limit: int = 80) -> str:
    """A value as an error message shows it: cut short, so a huge value (a YAML alias bomb) cannot flood it."""
    shortener = reprlib.Repr()  # attributes, not keywords: Python 3.10 and 3.11 take none
    shortener.maxstring = shortener.maxother = limit
    shortener.maxlist = shortener.maxdict = 6
    shortener.maxlevel = 2
    text = shortener.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _coerce(name: str, value: Any) -> Any:
    """Type-check a value read from a file or flag against the field's annotated type."""
    base, optional = _FIELD_TYPES[name]
    if value is None:
        if not optional:
            raise ConfigError(f"Config key {name!r} needs a value (it cannot be empty or null).")
        return value
    wrong = isinstance(value, bool) and base is not bool
    if base is float and isinstance(value, int) and not wrong:
        value = float(value)
    if wrong or not isinstance(value, base):
        raise ConfigError(f"Config key {name!r} must be {_TYPE_WORDS[base]} (got {short_repr(value)}).")
    return value


def config_from_dict(data: dict[str, Any], base: TrainConfig | None = None, where: str = "config") -> TrainConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must hold a mapping of option names to values (got {type(data).__name__}).")
    unknown = [k for k in data if k not in FIELD_NAMES]
    if unknown:
        hints = [f"{k!r}{did_you_mean(k, FIELD_NAMES)}" for k in unknown]
        raise ConfigError(f"{where} has unknown keys: {', '.join(hints)}. Valid keys: {', '.join(FIELD_NAMES)}.")
    values = {k: _coerce(k, v) for k, v in data.items()}
    return validate(dataclasses.replace(base or TrainConfig(), **values))


def load_config_file(path: str | Path, base: TrainConfig | None = None) -> TrainConfig:
    """Read a YAML or JSON file of TrainConfig keys (unknown keys are an error, and so are the keys cnnbench sets
    itself: a run folder's config.json may hold them, a user's file may not)."""
    data = read_config_mapping(path)
    refuse_internal_keys(data, f"Config file {path}")
    return config_from_dict(data, base, where=f"Config file {path}")


def refuse_internal_keys(data, where: str) -> None:
    """A user's options may not set what cnnbench sets itself (INTERNAL_FIELDS); a run folder's config.json may."""
    internal = [k for k in INTERNAL_FIELDS if isinstance(data, dict) and k in data]
    if internal:
        raise ConfigError(
            f"{where} sets {', '.join(internal)}, which cnnbench sets itself (a tuning trial scores on validation "
            "images in place of the test split): remove the key; `cnnbench compare --tune` runs trials."
        )


MAX_YAML_ALIASES = 100  # a config of training options needs a few at most; a billion-laughs file needs thousands


def _load_yaml(text: str, path: Path):
    """yaml.safe_load, refusing files with more than MAX_YAML_ALIASES aliases (*name): a few hundred bytes of
    nested aliases stand for billions of values, which anything that walks them (printing, copying) would expand."""
    import yaml

    class CountingLoader(yaml.SafeLoader):
        aliases = 0

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                CountingLoader.aliases += 1
                if CountingLoader.aliases > MAX_YAML_ALIASES:
                    raise ConfigError(
                        f"Config file {path} uses more than {MAX_YAML_ALIASES} YAML aliases (*name), far more than "
                        "training options need (nested aliases can expand to billions of values). Write the "
                        "values out."
                    )
            return super().compose_node(parent, index)

    return yaml.load(text, Loader=CountingLoader)  # noqa: S506 (a SafeLoader subclass)


def read_config_mapping(path: str | Path) -> dict:
    """The raw key/value mapping of a YAML or JSON config file (not yet checked against TrainConfig)."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"Cannot read config file {path}: {e.strerror or e}.") from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"Config file {path} is not a text file (it is not UTF-8): give a YAML or JSON file of training options."
        ) from None
    try:
        data = json.loads(text) if path.suffix == ".json" else _load_yaml(text, path)
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        raise ConfigError(
            f"Config file {path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {e}".replace("\n", " ")
        ) from None
    return {} if data is None else data
