import json
import time

import pytest
import torch

from cnnbench.analysis.profile import ProfileConfig, profile_model
from cnnbench.cli import main
from cnnbench.engine.memory import PeakMemory
from cnnbench.models import create_model
from cnnbench.models.complexity import count_flops, count_macs, count_params

# Published MACs at 3x224x224, 1000 classes (torchvision's model docs list these as GFLOPS, meaning MACs).
PUBLISHED_GMACS = {
    "resnet18": 1.82,
    "resnet34": 3.67,
    "resnet50": 4.11,
    "resnet101": 7.83,
    "resnet152": 11.56,
    "vgg11": 7.61,
    "vgg16": 15.47,
    "vgg19": 19.63,
}


@pytest.mark.parametrize("name,gmacs", PUBLISHED_GMACS.items())
def test_macs_match_published_figures(name, gmacs):
    with torch.device("meta"):  # shapes only: no memory, no arithmetic
        model = create_model(name, num_classes=1000, variant="paper")
    macs = count_macs(model, (3, 224, 224))
    assert abs(macs / 1e9 - gmacs) / gmacs < 0.01, macs


def test_flops_are_twice_macs_and_scale_with_input():
    with torch.device("meta"):
        model = create_model("resnet18", variant="small")
    f32, f64 = count_flops(model, (3, 32, 32)), count_flops(model, (3, 64, 64))
    assert f32 % 2 == 0 and count_macs(model, (3, 32, 32)) == f32 // 2
    assert f64 == pytest.approx(4 * f32, rel=0.01)


@pytest.mark.slow
def test_profile_record(tmp_path):
    cfg = ProfileConfig(input_shape=(1, 32, 32), batch_size=8, train=True, warmup=1, repeats=2)
    r = profile_model("vgg11_bn", cfg)
    assert r["params"] == count_params(create_model("vgg11_bn", in_chans=1, variant="small"))
    assert r["flops"] == 2 * r["macs"] and r["variant"] == "small" and r["input"] == "1x32x32"
    assert r["train_images_per_s"] > 0 and r["infer_images_per_s"] > 0 and r["peak_memory_mb"] > 0
    assert r["peak_memory_note"].startswith("process resident peak during one step")


def test_peak_memory_sees_a_short_lived_allocation():
    with PeakMemory(torch.device("cpu"), interval=0.001) as mem:
        block = torch.ones(64 * 2**20 // 4)  # 64 MB, written, so resident
        time.sleep(0.05)
        del block
    assert mem.peak_mb() - mem.base_mb >= 60


def test_profile_cli_writes_json(tmp_path, capsys):
    out = tmp_path / "p.json"
    assert (
        main(["profile", "--models", "resnet18,vgg11", "--batch-size", "4", "--repeats", "1", "--out", str(out)]) == 0
    )
    records = json.loads(out.read_text())
    assert [r["model"] for r in records] == ["resnet18", "vgg11"]
    for key in [
        "model",
        "variant",
        "input",
        "params",
        "macs",
        "flops",
        "train_images_per_s",
        "infer_images_per_s",
        "peak_memory_mb",
    ]:
        assert key in records[0]
    assert "FLOPs = 2 x MACs" in capsys.readouterr().out


def test_profile_rejects_small_inputs(capsys):
    assert main(["profile", "--models", "vgg16", "--input", "3x16x16"]) == 2
    assert "at least 32x32" in capsys.readouterr().err


def test_profile_without_timing_answers_at_once_for_big_models(capsys):
    import time

    start = time.perf_counter()
    assert main(["profile", "--models", "vgg19,resnet152", "--input", "3x224x224", "--no-timing"]) == 0
    assert time.perf_counter() - start < 30  # no weights are made: the meta device
    out = capsys.readouterr().out
    import torch

    from cnnbench.models import create_model

    with torch.device("meta"):
        params = sum(p.numel() for p in create_model("vgg19", num_classes=10, variant="paper").parameters())
    row = next(line for line in out.splitlines() if line.startswith("vgg19"))
    assert f"{params:,}" in row and "resnet152" in out and "no timing" in out


def test_profile_times_within_its_budget_and_picks_a_batch():
    import time

    import torch

    from cnnbench.analysis.profile import ProfileConfig, default_batch_size, profile_model

    cpu = torch.device("cpu")
    assert default_batch_size(cpu, (3, 32, 32)) == 128 and default_batch_size(cpu, (3, 224, 224)) == 8
    assert default_batch_size(torch.device("cuda"), (3, 32, 32)) == 512
    start = time.perf_counter()
    record = profile_model("resnet18", ProfileConfig(seconds=0.5, repeats=1000, warmup=1))
    assert time.perf_counter() - start < 15 and record["batch_size"] == 128 and record["infer_images_per_s"] > 0
