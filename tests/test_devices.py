"""Devices without the hardware: how auto chooses, what an absent device says, precision on Apple GPUs, and
torchrun refused there. (No Mac was available: the MPS paths are tested only as far as they need no GPU.)"""

import pytest
import torch

from cnnbench.cli import main
from cnnbench.engine import distributed, runtime
from cnnbench.errors import ConfigError


@pytest.mark.parametrize(
    "cuda, mps, chosen", [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu"), (True, False, "cuda")]
)
def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, chosen):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(runtime, "mps_available", lambda: mps)
    assert runtime.resolve_device("auto").type == chosen


def test_an_absent_apple_gpu_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setattr(runtime, "mps_available", lambda: False)
    with pytest.raises(ConfigError, match="sees no Apple GPU"):
        runtime.resolve_device("mps")
    assert main(["evaluate", "nowhere", "--device", "mps"]) == 2
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("bf16, chosen", [(True, "bf16"), (False, "fp16")])
def test_precision_on_mps_follows_what_the_installed_pytorch_supports(monkeypatch, bf16, chosen):
    monkeypatch.setattr(runtime, "mps_supports_bf16", lambda: bf16)
    assert runtime.resolve_precision("auto", torch.device("mps")) == chosen
    assert runtime.resolve_precision("fp32", torch.device("mps")) == "fp32"


def test_torchrun_on_mps_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="no process-group backend for Apple GPUs"):
        distributed.init_distributed("mps")


def test_the_device_option_offers_mps_everywhere():
    from cnnbench.cli import build_parser

    parser = build_parser()
    for command in (["train", "--out", "x"], ["evaluate", "r"], ["robustness", "r"], ["insight", "r"], ["profile"]):
        assert parser.parse_args([*command, "--device", "mps"]).device == "mps"
