"""Attacks a robustness researcher accepts: float32 whatever the training precision, restarts that only ever make
PGD stronger, and the gradient-masking checks, which flag an attack on a model whose gradient is zero."""

import json

import pytest
import torch

from cnnbench import TrainConfig, fit
from cnnbench.analysis.robustness import masking
from cnnbench.analysis.robustness.evaluate import RobustnessConfig, run_robustness
from tests.conftest import ROUNDING_MODEL, TINY_MODEL

RECIPE = dict(dataset="mnist_demo", epochs=2, limit_train=600, limit_test=100, batch_size=32, lr=0.05, precise_bn=0)


@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bf16") / "run"
    fit(TrainConfig(model=TINY_MODEL, precision="bf16", **RECIPE), out)
    return out


def test_attacks_run_in_float32_even_after_bf16_training(bf16_run, monkeypatch):
    dtypes = []
    import cnnbench.analysis.robustness.measure as measure

    real_fgsm = measure.fgsm

    def spying_fgsm(forward, x, y, eps):
        dtypes.append(forward(x).dtype)
        dtypes.append(torch.is_autocast_enabled("cpu"))
        return real_fgsm(forward, x, y, eps)

    monkeypatch.setattr(measure, "fgsm", spying_fgsm)
    cfg = RobustnessConfig(
        corruptions=(), attacks=("fgsm",), eps=(0.1,), limit_test=40, device="cpu", masking_checks=False
    )
    result = run_robustness(bf16_run, cfg, log=lambda _: None)
    assert result["precision"] == "bf16" and result["attack_settings"]["precision"] == "fp32"
    assert set(dtypes) == {torch.float32, False}  # float32 logits, no autocast while attacking


def test_more_restarts_never_make_pgd_weaker(bf16_run):
    def pgd_at(restarts):
        cfg = RobustnessConfig(
            corruptions=(),
            attacks=("pgd",),
            eps=(0.2,),
            limit_test=60,
            device="cpu",
            pgd_steps=3,
            pgd_restarts=restarts,
            masking_checks=False,
        )
        return run_robustness(bf16_run, cfg, log=lambda _: None)["adversarial"]["pgd"]["0.2"]

    assert pgd_at(3) <= pgd_at(1)


def test_a_model_without_input_gradient_is_flagged_as_masked(tmp_path):
    out = tmp_path / "rounding"
    summary = fit(TrainConfig(model=ROUNDING_MODEL, **{**RECIPE, "epochs": 4, "limit_train": 1500}), out)
    assert summary["test_top1"] > 0.3  # it classifies, well above chance
    cfg = RobustnessConfig(corruptions=(), attacks=("fgsm",), eps=(0.05, 0.1, 0.2), limit_test=60, device="cpu")
    result = run_robustness(out, cfg, log=lambda _: None)
    assert result["masking"]["suspect"] is True
    assert "attack may be masked" in result["masking"]["verdict"] and "0.6" in result["masking"]["verdict"]
    saved = json.loads((out / "robustness.json").read_text())
    assert saved["masking"]["suspect"] is True


def test_the_masking_checks_by_hand():
    assert not masking.falls_with_eps("pgd", {0.01: 0.5, 0.02: 0.6}).passed
    assert masking.falls_with_eps("pgd", {0.01: 0.5, 0.02: 0.505, 0.03: 0.2}).passed  # within sampling noise
    assert not masking.near_zero_at_large_eps("pgd", 0.125, 0.3).passed
    assert masking.near_zero_at_large_eps("pgd", 0.125, 0.01).passed
    assert not masking.more_steps_not_weaker(10, 0.10, 50, 0.20, 0.03).passed
    assert not masking.black_box_not_stronger("square", 0.05, "pgd", 0.20, 0.03).passed
    verdict = masking.summary([masking.near_zero_at_large_eps("pgd", 0.125, 0.3)])
    assert verdict["suspect"] and verdict["verdict"].startswith("attack may be masked: pgd leaves 30.0%")


def test_the_report_shows_the_masking_flag(tmp_path):
    from cnnbench.cli import main

    out = tmp_path / "rounding"
    fit(TrainConfig(model=ROUNDING_MODEL, **{**RECIPE, "epochs": 1}), out)
    args = ["--corruptions", "none", "--attacks", "fgsm", "--eps", "0.05,0.1", "--limit-test", "40"]
    assert main(["robustness", str(out), *args]) == 0
    assert main(["report", str(out)]) == 0
    assert "attack may be masked" in (out / "report.html").read_text()


def test_robustness_pairs_are_paired_tests_on_the_same_images(tmp_path):
    """pairs.csv gets a row per robustness measure, with McNemar's b and c counted here by hand from robustness.npz,
    labelled exploratory (the protocol declares test top-1)."""
    import csv

    import numpy as np

    from cnnbench.analysis.statistics import mcnemar_exact
    from cnnbench.cli import main
    from cnnbench.study import StudySpec, run_study
    from tests.conftest import TINY_MODEL_WIDE

    base = TrainConfig(epochs=1, limit_train=300, limit_test=60, batch_size=32, lr=0.05, precise_bn=0)
    out = tmp_path / "study"
    run_study(StudySpec((TINY_MODEL, TINY_MODEL_WIDE), ("mnist_demo",), (0,), base), out, log=lambda _: None)
    args = [
        "--corruptions",
        "shot_noise,fog",
        "--severities",
        "1,3",
        "--attacks",
        "fgsm",
        "--eps",
        "0.1",
        "--limit-test",
        "40",
        "--no-masking-checks",
    ]
    assert main(["robustness", str(out), *args]) == 0
    with open(out / "pairs.csv") as f:
        rows = {r["measure"]: r for r in csv.DictReader(f)}
    assert {"test_top1", "corruptions: noise", "corruptions: weather", "corruptions: all", "fgsm eps 0.1"} <= set(rows)
    row = rows["corruptions: noise"]
    z = {m: np.load(out / "runs" / f"{m}-mnist_demo-seed0" / "robustness.npz") for m in (TINY_MODEL, TINY_MODEL_WIDE)}
    a, b = row["model_a"], row["model_b"]
    ca = np.concatenate([z[a]["corruption|shot_noise|1"], z[a]["corruption|shot_noise|3"]])
    cb = np.concatenate([z[b]["corruption|shot_noise|1"], z[b]["corruption|shot_noise|3"]])
    by_hand = mcnemar_exact(ca, cb)
    assert (int(row["mcnemar_b_summed"]), int(row["mcnemar_c_summed"])) == (by_hand.b, by_hand.c) and len(ca) == 80
    assert float(row["diff_top1"]) == pytest.approx(ca.mean() - cb.mean()) and float(row["diff_top1"]) >= 0
    assert row["status"] == "exploratory" and "declared metric" in row["status_reason"]
    from cnnbench.analysis.protocol import holm

    exploratory = [r for r in rows.values() if r["status"] == "exploratory" and r["p"]]
    by_hand = dict(zip((r["measure"] for r in exploratory), holm([float(r["p"]) for r in exploratory])))
    assert float(row["p_adjusted"]) == pytest.approx(by_hand["corruptions: noise"])  # Holm among the exploratory
    # the declared comparison is its own family: the exploratory rows added afterwards leave its p as it was
    declared = rows["test_top1"]
    assert declared["status"] == "confirmatory" and declared["p_adjusted"] == declared["p"]


def test_autoattack_suite_on_a_tiny_model(bf16_run):
    """AutoAttack's standard suite through the authors' code: a cascade whose accuracy never rises from stage to
    stage, never above FGSM's at the same eps by more than noise, and a Square-against-white-box check."""
    pytest.importorskip("pyautoattack")
    cfg = RobustnessConfig(corruptions=(), attacks=("fgsm", "autoattack"), eps=(0.3,), limit_test=30, device="cpu")
    result = run_robustness(bf16_run, cfg, log=lambda _: None)
    after = result["attack_settings"]["autoattack"]["after"]["0.3"]
    order = ["clean", "apgd-ce", "apgd-t", "fab-t", "square"]
    assert list(after) == order
    assert all(after[a] >= after[b] for a, b in zip(order, order[1:]))
    assert result["adversarial"]["autoattack"]["0.3"] == after["square"]
    assert result["adversarial"]["autoattack"]["0.3"] <= result["adversarial"]["fgsm"]["0.3"] + 0.05
    names = [c["name"] for c in result["masking"]["checks"]]
    assert "black-box is not stronger than white-box" in names


def test_autoattack_without_the_package_is_one_clear_message(bf16_run, monkeypatch):
    import builtins

    from cnnbench.errors import ConfigError

    real_import = builtins.__import__

    def no_autoattack(name, *args, **kwargs):
        if name == "pyautoattack":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_autoattack)
    cfg = RobustnessConfig(corruptions=(), attacks=("autoattack",), limit_test=10, device="cpu")
    with pytest.raises(ConfigError, match=r"cnnbench\[attacks\]"):
        run_robustness(bf16_run, cfg, log=lambda _: None)


def test_autoattack_warnings_become_one_check_per_kind():
    from cnnbench.analysis.robustness.autoattack import own_checks

    messages = [f"there are {n} points with zero gradient! See flags_doc.md for details." for n in (7, 6, 5)]
    checks = own_checks(own_checks(messages)[0].detail.split("\n") + messages)
    assert len(checks) == 1 and not checks[0].passed
    assert checks[0].detail.count("AutoAttack's flags_doc.md") == 1


def test_transfer_attacks_between_a_studys_models(tmp_path):
    """PGD made on one model, shown to the other of the same seed, on the images each run's robustness used; and
    the report's check flags a transferred attack that beats the target's own white-box PGD."""
    from cnnbench.analysis.robustness.transfer import study_transfer
    from cnnbench.report.robustness import transfer_rows
    from tests.conftest import TINY_MODEL_WIDE

    cfg = RobustnessConfig(corruptions=(), attacks=("pgd",), eps=(0.1, 0.2), limit_test=30, device="cpu", pgd_steps=3)
    for model in (TINY_MODEL, TINY_MODEL_WIDE):
        run = tmp_path / "runs" / model
        fit(TrainConfig(model=model, seed=3, **{**RECIPE, "epochs": 1}), run)
        run_robustness(run, cfg, log=lambda _: None)
    rows = study_transfer(tmp_path, "cpu", log=lambda _: None)
    assert sorted((r["source"], r["target"]) for r in rows) == [
        (TINY_MODEL, TINY_MODEL_WIDE),
        (TINY_MODEL_WIDE, TINY_MODEL),
    ]
    for r in rows:
        own = json.loads((tmp_path / "runs" / r["target"] / "robustness.json").read_text())
        assert r["seed"] == 3 and r["eps"] == 0.2 and r["images"] == 30 and r["pgd_steps"] == 3
        assert r["white_box_top1"] == own["adversarial"]["pgd"]["0.2"] and 0 <= r["transfer_top1"] <= 1
    saved = json.loads((tmp_path / "transfer.json").read_text())
    assert len(saved["masking"]["checks"]) == 2
    saved["rows"][0].update(transfer_top1=0.1, white_box_top1=0.5)  # a transferred attack far stronger: flagged
    (tmp_path / "transfer.json").write_text(json.dumps(saved))
    flagged = transfer_rows(tmp_path, "mnist_demo")
    assert [r["suspect"] for r in flagged] == [True, False]


def test_pgd_far_above_autoattack_is_flagged_also_in_older_results():
    """Label smoothing flattens cross-entropy: PGD then leaves images that AutoAttack breaks. The check flags it, and
    the report applies it to robustness.json files written before it existed."""
    from cnnbench.report.robustness import masking_verdict

    older = {
        "adversarial": {"pgd": {"0.03137": 0.063, "0.0157": 0.16}, "autoattack": {"0.03137": 0.0}},
        "attack_settings": {"pgd_steps": 20, "pgd_restarts": 2},
        "masking": {
            "checks": [{"name": "more steps are not weaker", "passed": True, "detail": "ok"}],
            "suspect": False,
        },
    }
    (check,) = masking.pgd_not_weaker_than_autoattack(older)
    assert not check.passed and "PGD-20x2 leaves 6.3%" in check.detail
    assert "overstates robustness" in masking_verdict(older)
    older["adversarial"]["pgd"]["0.03137"] = 0.005  # within sampling noise of AutoAttack's: no flag
    assert masking_verdict(older) is None


def test_the_attack_time_is_estimated_before_attacking(bf16_run):
    said = []
    cfg = RobustnessConfig(corruptions=(), attacks=("fgsm", "pgd"), eps=(0.1,), limit_test=20, device="cpu")
    run_robustness(bf16_run, cfg, log=said.append)
    estimate = next(i for i, line in enumerate(said) if line.strip().startswith("attacks: about"))
    assert estimate < next(i for i, line in enumerate(said) if line.strip().startswith("fgsm"))
