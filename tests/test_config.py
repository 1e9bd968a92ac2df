import dataclasses
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnbench.config import FIELD_NAMES, TrainConfig, config_from_dict, field_type, load_config_file, validate
from cnnbench.errors import ConfigError


def test_yaml_config_roundtrip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: resnet18\ndataset: cifar10\nepochs: 3\nlr: 0.02\nlimit_train: 500\naugment: false\n")
    cfg = load_config_file(path)
    assert (cfg.model, cfg.dataset, cfg.epochs, cfg.lr, cfg.limit_train, cfg.augment) == (
        "resnet18",
        "cifar10",
        3,
        0.02,
        500,
        False,
    )
    assert cfg.batch_size == TrainConfig().batch_size


def test_yaml_unknown_key_is_named_with_suggestion(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: resnet18\nlearning_rate: 0.1\nepoch: 3\n")
    with pytest.raises(ConfigError, match=r"unknown keys: 'learning_rate'.*'epoch' \(did you mean 'epochs'\?\)"):
        load_config_file(path)


def test_invalid_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config_file(path)


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"lr": -0.1}, r"lr must be more than 0 \(got -0.1\): try 0.05 for SGD"),
        ({"lr": float("nan")}, "lr must be a finite number"),
        ({"weight_decay": float("nan")}, "weight_decay must be a finite number"),
        ({"momentum": float("-inf")}, "momentum must be a finite number"),
        ({"label_smoothing": float("nan")}, "label_smoothing must be a finite number"),
        ({"warmup_fraction": float("inf")}, "warmup_fraction must be a finite number"),
        ({"epochs": 0}, "epochs must be at least 1"),
        ({"batch_size": 1}, "batch_size must be at least 2 .* batch norm cannot train on one image"),
        ({"optimizer": "lbfgs"}, "Invalid optimizer 'lbfgs'"),
        ({"model": "vgg17"}, "Unknown model 'vgg17'"),
        ({"label_smoothing": 1.0}, r"label_smoothing must be in \[0, 1\) \(got 1.0\)"),
        ({"limit_train": 0}, "limit_train must be at least 1"),
        ({"crop_padding": -1}, "crop_padding must be at least 0"),
    ],
)
def test_invalid_values_are_explained(changes, message):
    with pytest.raises(ConfigError, match=message):
        validate(TrainConfig(**changes))


def _just_outside(allowed, kind):
    """A value of the field's type just past one end of its range."""
    step = 1 if kind is int else 1e-9
    if allowed.low is not None:
        return allowed.low if allowed.low_open else allowed.low - step
    return allowed.high if allowed.high_open else allowed.high + step


@pytest.mark.parametrize("field", [f for f in dataclasses.fields(TrainConfig) if f.metadata.get("range")], ids=str)
def test_each_range_in_the_options_metadata_is_enforced_and_holds_the_default(field):
    """config.option's range is the one place a bound is written: validation refuses a value just outside it,
    naming the range, and the default (where not None) lies inside it."""
    allowed = field.metadata["range"]
    default = getattr(TrainConfig(), field.name)
    assert default is None or allowed.holds(default)
    outside = _just_outside(allowed, field_type(field.name))
    with pytest.raises(ConfigError, match=re.escape(f"{field.name} must be {allowed.text()}")):
        validate(dataclasses.replace(TrainConfig(), **{field.name: outside}))


values = st.one_of(st.none(), st.booleans(), st.integers(-5, 1000), st.floats(allow_nan=True), st.text(max_size=12))
keys = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=12))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, values, max_size=6))
def test_config_loader_accepts_or_explains(data):
    """Any mapping either gives a valid config or a ConfigError, never another exception."""
    try:
        cfg = config_from_dict(data)
    except ConfigError as e:
        assert str(e)
        return
    assert validate(cfg) == cfg
    for k, v in data.items():
        assert getattr(cfg, k) == v or (isinstance(v, int) and getattr(cfg, k) == float(v))


def test_data_options_follow_the_run_config():
    from dataclasses import fields

    from cnnbench.data.loader import DataOptions

    cfg = TrainConfig(limit_train=100, limit_test=50, val_split=10, pad_to=40, resize=36, download=False)
    options = cfg.data_options()
    assert {f.name for f in fields(DataOptions)} <= set(FIELD_NAMES)
    # one home for the defaults: TrainConfig's data fields default to DataOptions' own
    assert TrainConfig().data_options() == DataOptions()
    assert options == DataOptions(limit_train=100, limit_test=50, val_split=10, pad_to=40, resize=36, download=False)


@pytest.mark.parametrize(
    "key, value",
    [("val_split", 1.5), ("pad_to", "32"), ("resize", True), ("threads", 2.0), ("limit_train", [1]), ("model", 3)],
)
def test_every_field_is_type_checked(key, value):
    with pytest.raises(ConfigError, match=key):
        config_from_dict({key: value})
    with pytest.raises(ConfigError, match=key):  # built in Python, not read from a file: checked all the same
        validate(dataclasses.replace(TrainConfig(), **{key: value}))


def test_a_huge_value_is_cut_short_in_the_error():
    bomb = [["x" * 1000] * 1000] * 1000  # what a YAML alias bomb expands to, without the memory
    with pytest.raises(ConfigError) as e:
        config_from_dict({"epochs": bomb})
    assert len(str(e.value)) < 300


def test_every_training_option_is_described_once_in_its_field():
    """config.option holds each field's help and choices; the flags, the docs' table and validation read them."""
    import dataclasses

    from cnnbench.config import TrainConfig
    from cnnbench.models import VARIANTS

    described = {f.name: f.metadata for f in dataclasses.fields(TrainConfig)}
    assert all(m.get("help") for m in described.values())
    assert described["variant"]["choices"] == VARIANTS
    with pytest.raises(ConfigError, match="Invalid schedule 'linear': choose one of onecycle, cosine, step"):
        TrainConfig().replace(schedule="linear")
