"""The per-layer architecture view: `cnnbench models NAME --layers`, the papers' tables, the report's stages."""

import csv
import re
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torchvision

from cnnbench.analysis.architecture import grand_total, layer_table, model_layer_table, stage_totals
from cnnbench.analysis.paper_tables import paper_table
from cnnbench.cli import main
from cnnbench.models import create_model, list_models
from cnnbench.models.complexity import count_macs, count_params

MODELS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "models.md"


def _meta(name, variant, classes=10):
    with torch.device("meta"):
        return create_model(name, num_classes=classes, variant=variant)


@pytest.mark.parametrize("variant", ["small", "paper"])
@pytest.mark.parametrize("name", list_models())
def test_layers_add_up_to_the_models_totals(name, variant):
    model = _meta(name, variant, classes=7)
    rows = layer_table(model, (3, 32, 32))
    total = grand_total(rows)
    assert total["params"] == count_params(model)
    assert total["macs"] == count_macs(model, (3, 32, 32))  # the counter `cnnbench profile` reports
    assert rows[-1].output_shape == (1, 7)
    # the stages partition the layers: their sums are the totals too
    stages = stage_totals(rows)
    assert sum(s["params"] for s in stages) == total["params"] and sum(s["macs"] for s in stages) == total["macs"]
    assert stages[-1]["stage"] == "head"


def test_a_functional_call_outside_any_layer_keeps_the_totals_exact():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.extra = nn.Parameter(torch.zeros(5, 4))

        def forward(self, x):
            return self.conv(x).mean((2, 3)) @ self.extra.T  # a matmul in forward(), in no submodule

    model = Odd()
    rows = layer_table(model, (3, 8, 8))
    assert grand_total(rows)["params"] == count_params(model)
    assert grand_total(rows)["macs"] == count_macs(model, (3, 8, 8)) and rows[-1].name == "(outside any layer)"


def test_layer_values_on_a_hand_checked_model():
    _, rows = model_layer_table("resnet18", "small", (3, 32, 32), 10)
    conv1 = rows[0]
    assert (conv1.name, conv1.type, conv1.stage, conv1.output_shape) == ("conv1", "Conv2d", "stem", (1, 64, 32, 32))
    assert (
        conv1.params == 3 * 64 * 9 and conv1.macs == 3 * 64 * 9 * 32 * 32 and conv1.activation_bytes == 64 * 32 * 32 * 4
    )
    relu = next(r for r in rows if r.name == "relu")
    assert relu.activation_bytes == 0  # in place: its output is its input's memory
    # the reused ReLU of a basic block appears once per call, its (zero) parameters counted once
    assert [r.name for r in rows].count("layer1.0.relu") == 2
    stages = {s["stage"]: s for s in stage_totals(rows)}
    assert stages["layer2"]["works_at"] == "16x16" and stages["layer4"]["output_shape"] == "1x512x4x4"


def test_vgg_table_matches_the_study_and_torchvision():
    table = paper_table("vgg")
    header, layers = (
        table.splitlines()[0],
        next(line for line in table.splitlines() if line.startswith("| weight layers")),
    )
    assert [c.strip() for c in header.strip("|").split("|")][1:] == ["A", "A-LRN", "B", "C", "D", "E"]
    assert [int(c) for c in layers.strip("|").split("|")[1:]] == [11, 11, 13, 16, 16, 19]  # the study's Table 1
    params = next(line for line in table.splitlines() if line.startswith("| parameters"))
    counts = [int(c.strip().replace(",", "")) for c in params.strip("|").split("|")[1:]]
    with torch.device("meta"):
        reference = {tv: count_params(getattr(torchvision.models, tv)()) for tv in ("vgg11", "vgg13", "vgg16", "vgg19")}
    assert (counts[0], counts[2], counts[4], counts[5]) == tuple(reference.values())
    assert counts[1] == counts[0]  # LRN has no parameters
    assert "conv1-256" in table  # column C's 1x1 convolutions


def test_resnet_table_has_the_papers_depths_and_stages():
    table = paper_table("resnet")
    for depth in (18, 34, 50, 101, 152):
        assert f"({depth}-layer)" in table
    assert "[3x3, 64; 3x3, 64] x 2" in table and "[1x1, 256; 3x3, 256; 1x1, 1024] x 36" in table
    assert re.search(r"\| conv5_x \| 7x7 \|", table)
    with torch.device("meta"):
        assert f"{count_params(torchvision.models.resnet50()):,}" in table


@pytest.mark.parametrize("which", ["vgg", "resnet"])
def test_the_docs_show_the_tables_the_command_prints(which, capsys):
    assert main(["models", "--table", which]) == 0
    assert capsys.readouterr().out in MODELS_PAGE.read_text(encoding="utf-8")


def test_layers_command_writes_csv_and_refuses_bad_input(tmp_path, capsys):
    out = tmp_path / "layers.csv"
    assert main(["models", "vgg16_bn", "--layers", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "block1" in printed and "total" in printed
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert sum(int(r["params"]) for r in rows) == count_params(_meta("vgg16_bn", "small"))
    assert main(["models", "vgg16_bm", "--layers"]) == 2
    assert "Did you mean 'vgg16_bn'" in capsys.readouterr().err
    assert main(["models", "resnet18", "--layers", "--input", "3x16x16"]) == 2
    assert "at least 32x32" in capsys.readouterr().err
    assert main(["models", "--layers"]) == 2
    capsys.readouterr()
    narrow = tmp_path / "narrow.csv"
    assert main(["models", "vgg16_bn", "--layers", "--width", "0.25", "--out", str(narrow)]) == 0
    with open(narrow) as f:
        narrow_params = sum(int(r["params"]) for r in csv.DictReader(f))
    assert narrow_params == count_params(create_model("vgg16_bn", variant="small", width=0.25))
    assert main(["models", "resnet18", "--layers", "--width", "-1"]) == 2
    assert "above 0" in capsys.readouterr().err
