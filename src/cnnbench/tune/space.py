"""A tuning search space: which training options a study tunes, over which ranges or choices.

Written as ``lr=0.01:0.3:log,weight_decay=1e-5:1e-3:log,label_smoothing=0,0.1,0.2``: ``name=low:high`` is a range
(``:log`` samples it on a log scale), ``name=a,b,c`` a list of choices. Every model of a study gets the same space.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import FIELD_NAMES, TrainConfig, field_type
from ..errors import ConfigError, did_you_mean

# Options that change how a model is trained, not what the model is (width, variant and pretrained weights change the
# architecture under comparison) nor how the run is carried out (threads, device, precision).
TUNABLE = (
    "lr",
    "weight_decay",
    "label_smoothing",
    "momentum",
    "warmup_fraction",
    "epochs",
    "batch_size",
    "crop_padding",
    "cutout",
    "ema",
    "optimizer",
    "schedule",
    "nesterov",
    "decay",
)
EXAMPLE = "lr=0.01:0.3:log,weight_decay=1e-5:1e-3:log,label_smoothing=0,0.1,0.2"


@dataclass(frozen=True)
class Param:
    name: str
    low: float | None = None  # a range: low, high and whether to sample it on a log scale
    high: float | None = None
    log: bool = False
    choices: tuple = ()  # a list of choices (then low and high are None)

    @property
    def is_range(self) -> bool:
        return not self.choices

    def text(self) -> str:
        if self.is_range:
            return f"{self.name}={self.low:g}:{self.high:g}" + (":log" if self.log else "")
        return f"{self.name}=" + ",".join(str(c) for c in self.choices)

    def distribution(self):
        """The Optuna distribution this parameter is sampled from."""
        import optuna

        if not self.is_range:
            return optuna.distributions.CategoricalDistribution(list(self.choices))
        if field_type(self.name) is int:
            return optuna.distributions.IntDistribution(int(self.low), int(self.high), log=self.log)
        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log)


@dataclass(frozen=True)
class SearchSpace:
    params: tuple[Param, ...]

    def text(self) -> str:
        return ",".join(p.text() for p in self.params)

    @property
    def is_grid(self) -> bool:
        """Every entry a list: the space is a grid, searched point by point."""
        return all(not p.is_range for p in self.params)

    def grid_size(self) -> int:
        size = 1
        for p in self.params:
            size *= len(p.choices)
        return size

    def distributions(self) -> dict:
        return {p.name: p.distribution() for p in self.params}


def _value(name: str, text: str):
    """A choice or bound as the option's type (true/false for a switch)."""
    base = field_type(name)
    try:
        if base is bool:
            if text.lower() not in ("true", "false"):
                raise ValueError
            return text.lower() == "true"
        if base is int:
            return int(text)
        if base is float:
            return float(text)
        return text
    except ValueError:
        kind = {bool: "true or false", int: "a whole number", float: "a number"}[base]
        raise ConfigError(f"--tune: {name} takes {kind}, not {text!r} (for example {EXAMPLE}).") from None


def _check_value(name: str, value) -> None:
    """The value must be one the option accepts (TrainConfig's own checks), so a trial cannot fail on it later."""
    try:
        TrainConfig().replace(**{name: value})
    except ConfigError as e:
        raise ConfigError(f"--tune: {name}={value!r} is not a valid setting: {e}") from None


def _param(name: str, values: list[str]) -> Param:
    if name not in TUNABLE:
        hint = did_you_mean(name, TUNABLE) if name not in FIELD_NAMES else " (it is not a recipe setting)"
        raise ConfigError(f"--tune cannot tune {name!r}{hint}. Tunable options: {', '.join(TUNABLE)}.")
    if not values or any(not v for v in values):
        raise ConfigError(f"--tune: {name} needs a range low:high[:log] or choices a,b,c (for example {EXAMPLE}).")
    if len(values) == 1 and ":" in values[0]:
        parts = values[0].split(":")
        log = len(parts) == 3 and parts[2] == "log"
        if len(parts) not in (2, 3) or (len(parts) == 3 and not log):
            raise ConfigError(f"--tune: {name}={values[0]} is not a range: write low:high or low:high:log.")
        if field_type(name) not in (int, float):
            raise ConfigError(f"--tune: {name} is not a number, so it takes choices (a,b), not a range.")
        low, high = (_value(name, v) for v in parts[:2])
        if not low < high:
            raise ConfigError(f"--tune: the range of {name} must go from low to high (got {low}:{high}).")
        if log and low <= 0:
            raise ConfigError(f"--tune: a log range needs a positive low end ({name}={values[0]}).")
        for v in (low, high):
            _check_value(name, v)
        return Param(name, float(low) if isinstance(low, float) else low, high, log)
    choices = tuple(dict.fromkeys(_value(name, v) for v in values))
    for v in choices:
        _check_value(name, v)
    return Param(name, choices=choices)


def parse_space(text: str) -> SearchSpace:
    """``name=low:high[:log]`` and ``name=a,b,c`` entries, separated by commas."""
    entries: list[tuple[str, list[str]]] = []
    for token in (t.strip() for t in str(text).split(",")):
        if "=" in token:
            name, _, value = token.partition("=")
            entries.append((name.strip(), [value.strip()] if value.strip() else []))
        elif entries and token:
            entries[-1][1].append(token)
        elif token or not entries:
            raise ConfigError(
                f"--tune {text!r}: each entry starts with an option name and '=' (for example {EXAMPLE})."
            )
    names = [n for n, _ in entries]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"--tune names {', '.join(repeated)} more than once: give each option one range or list.")
    return SearchSpace(tuple(_param(n, v) for n, v in entries))
