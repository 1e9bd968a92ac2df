"""Pairs of models in a study: per-example tests, pairing by seed number, refusing mixed recipes, the findings' words.

Run folders here are written by hand (summary, metrics, misclassified examples), so each case is exact and needs
no training; test_study.py covers the same code on really trained runs."""

import csv
import json

import numpy as np
import pytest

from cnnbench.cli import main
from cnnbench.config import TrainConfig
from cnnbench.errors import ConfigError
from cnnbench.report.comparison import findings
from cnnbench.report.run_records import load_runs
from cnnbench.report.significance import all_pairs
from cnnbench.report.tables import group_runs

N = 1000


def write_run(study, model, seed, correct, **config):
    run = study / "runs" / f"{model}-mnist-seed{seed}"
    run.mkdir(parents=True)
    cfg = {**TrainConfig(model=model, dataset="mnist", seed=seed).to_dict(), **config}
    top1 = float(np.mean(correct))
    summary = {
        "model": model,
        "variant": "small",
        "dataset": "mnist",
        "data_source": "MNIST",
        "seed": seed,
        "epochs": 2,
        "test_images": len(correct),
        "test_top1": top1,
        "test_top5": 1.0,
        "test_loss": 1 - top1,
        "train_time_s": 100.0,
        "time_per_epoch_s": 50.0,
        "images_per_s": 10.0,
        "params": 1000,
        "macs": 10,
        "precision": "fp32",
        "device": "cpu",
        "input_shape": [1, 32, 32],
        "environment": {"device_name": "CPU"},
        "config": cfg,
    }
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "metrics.csv").write_text(
        "epoch,train_loss,train_acc,test_loss,test_top1,test_top5,lr,epoch_time_s\n"
        f"1,1.0,0.5,1.0,{top1},1.0,0.1,50\n2,0.5,0.8,0.5,{top1},1.0,0.0,50\n"
    )
    with open(run / "misclassified.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "true", "pred", "confidence"])
        w.writerows([i, "0", "1", 0.9] for i in np.flatnonzero(~correct))
    return run


def table(b, c, both=850, rng=None):
    """Correctness of A and B over N examples with b only-A-right and c only-B-right examples (shuffled)."""
    a = np.zeros(N, bool)
    bb = np.zeros(N, bool)
    a[:b] = True
    bb[b : b + c] = True
    a[b + c : b + c + both] = bb[b + c : b + c + both] = True
    order = (rng or np.random.default_rng(0)).permutation(N)
    return a[order], bb[order]


def pairs_of(study):
    groups = group_runs(load_runs(study))
    return groups, all_pairs(groups)


def test_one_seed_significant_difference_is_named_with_its_interval_and_test(tmp_path):
    a, b = table(40, 10)
    write_run(tmp_path, "resnet18", 0, a)
    write_run(tmp_path, "vgg16_bn", 0, b)
    groups, (pair,) = pairs_of(tmp_path)
    assert (pair.a, pair.b) == ("resnet18", "vgg16_bn")
    assert pair.mcnemar[:2] == (40, 10) and pair.mcnemar[2] < 0.001 and pair.significant
    assert pair.diff == pytest.approx(0.03) and pair.ci[0] > 0
    text = " ".join(findings(groups, [pair])["mnist"])
    assert (
        "this resnet18 network is more accurate than this vgg16_bn network by 3.00 points (95% CI" in text
        and "McNemar p < 0.001, b = 40, c = 10" in text
    )
    assert "spread over seeds is unknown" in text and "one trained network, not the architecture" in text
    assert "every verdict below is exploratory" in text  # this study declared no protocol


def test_one_seed_small_difference_is_not_significant(tmp_path):
    a, b = table(12, 10)
    write_run(tmp_path, "vgg16_bn", 0, a)
    write_run(tmp_path, "resnet18", 0, b)
    groups, (pair,) = pairs_of(tmp_path)
    assert pair.a == "vgg16_bn" and not pair.significant and pair.ci[0] < 0 < pair.ci[1]
    text = " ".join(findings(groups, [pair])["mnist"])
    assert (
        "vgg16_bn and resnet18: no significant difference between these two trained networks at this test-set "
        "size (McNemar p = 0.83" in text
    )
    assert "is more accurate" not in text


def test_pairs_by_seed_number_not_position(tmp_path):
    rng = np.random.default_rng(3)
    # A ran seeds 2, 0, 1 (written out of order); B ran 1, 2, 3. Only seeds 1 and 2 pair up.
    tables = {1: table(30, 10, rng=rng), 2: table(25, 5, rng=rng), 0: table(0, 90, rng=rng), 3: table(90, 0, rng=rng)}
    for seed in (2, 0, 1):
        write_run(tmp_path, "resnet18", seed, tables[seed][0])
    for seed in (1, 3, 2):
        write_run(tmp_path, "vgg16_bn", seed, tables[seed][1])
    groups, (pair,) = pairs_of(tmp_path)
    assert pair.seeds == [1, 2] and pair.unpaired_seeds == ([0], [3])
    assert [s.diff for s in pair.per_seed] == [pytest.approx(0.02), pytest.approx(0.02)]
    assert [(s.b, s.c) for s in pair.per_seed] == [(30, 10), (25, 5)] and pair.wins_a == 2
    assert pair.ci_method == "paired t over 2 seeds" and pair.mcnemar[:2] == (55, 15)
    assert pair.mcnemar[2] == pytest.approx(max(s.p for s in pair.per_seed))
    text = " ".join(findings(groups, [pair])["mnist"])
    assert "resnet18: [0]; vgg16_bn: [3]" in text


def test_several_seeds_spread_calls_for_more_seeds(tmp_path):
    rng = np.random.default_rng(4)
    for seed, (bw, cw) in enumerate([(40, 10), (10, 12), (30, 18)]):  # diffs +3.0, -0.2, +1.2 points
        a, b = table(bw, cw, rng=rng)
        write_run(tmp_path, "resnet18", seed, a)
        write_run(tmp_path, "vgg16_bn", seed, b)
    groups, (pair,) = pairs_of(tmp_path)
    assert pair.wins_a == 2 and not pair.significant and pair.diff_std > pair.diff / 2
    assert pair.seeds_needed > 3
    text = " ".join(findings(groups, [pair])["mnist"])
    assert "no significant difference over 3 seeds" in text and "resnet18 wins 2 of 3 seeds" in text
    assert f"about {pair.seeds_needed} seeds in all would resolve" in text


def test_consistent_gap_over_seeds_is_significant(tmp_path):
    rng = np.random.default_rng(5)
    for seed, (bw, cw) in enumerate([(40, 10), (41, 10), (39, 10)]):
        a, b = table(bw, cw, rng=rng)
        write_run(tmp_path, "resnet18", seed, a)
        write_run(tmp_path, "vgg16_bn", seed, b)
    groups, (pair,) = pairs_of(tmp_path)
    assert pair.significant and pair.ci[0] > 0
    text = " ".join(findings(groups, [pair])["mnist"])
    assert "resnet18 is more accurate than vgg16_bn by 3.00 points on average over 3 seeds" in text
    assert "McNemar p < 0.001 in every seed" in text and "more seeds are needed" not in text


def test_predictions_file_is_preferred_to_the_misclassified_list(tmp_path):
    a, b = table(40, 10)
    run = write_run(tmp_path, "resnet18", 0, a)
    write_run(tmp_path, "vgg16_bn", 0, b)
    targets = np.zeros(N, int)
    np.savez(run / "predictions.npz", preds=np.where(b, 0, 1), targets=targets)  # says A is exactly B
    _, (pair,) = pairs_of(tmp_path)
    assert pair.mcnemar == (0, 0, 1.0)


def test_mixed_recipes_are_refused_naming_the_keys(tmp_path, capsys):
    a, b = table(40, 10)
    write_run(tmp_path, "resnet18", 0, a)
    write_run(tmp_path, "resnet18", 1, b, lr=0.05, threads=1)  # threads do not change what is learned
    with pytest.raises(ConfigError, match=r"lr: 0\.1 in resnet18-mnist-seed0 but 0\.05 in resnet18-mnist-seed1"):
        group_runs(load_runs(tmp_path))
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "different settings" in err and "Traceback" not in err and "threads" not in err


def test_study_writes_pairs_csv_and_shows_pairs(tmp_path):
    a, b = table(40, 10)
    write_run(tmp_path, "resnet18", 0, a)
    write_run(tmp_path, "vgg16_bn", 0, b)
    assert main(["report", str(tmp_path)]) == 0
    with open(tmp_path / "pairs.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:14] == [
        "dataset",
        "measure",
        "model_a",
        "model_b",
        "seeds",
        "top1_a",
        "top1_b",
        "diff_top1",
        "diff_ci_low",
        "diff_ci_high",
        "ci_method",
        "mcnemar_b_summed",
        "mcnemar_c_summed",
        "mcnemar_p_largest",
    ]
    assert (rows[0]["model_a"], rows[0]["mcnemar_b_summed"], rows[0]["mcnemar_c_summed"], rows[0]["wins_a"]) == (
        "resnet18",
        "40",
        "10",
        "1",
    )
    with open(tmp_path / "comparison.csv") as f:
        comp = list(csv.DictReader(f))
    low, high = float(comp[0]["test_top1_ci_low"]), float(comp[0]["test_top1_ci_high"])
    assert low < float(comp[0]["test_top1"]) < high and comp[0]["evaluated_on"] == "test"
    md = (tmp_path / "comparison.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| test top-1 | resnet18 | vgg16_bn |"))
    assert "| 3.00 | 1.63 to 4.00 | < 0.001 | < 0.001 | exact McNemar, one seed | 1 of 1 | 0 | 40 / 10" in row
    assert "Which differences are real" in (tmp_path / "report.html").read_text()
