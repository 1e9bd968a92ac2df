"""Hand-edited or damaged run-folder files never crash `cnnbench report`: it succeeds (leaving the damaged run out,
with a warning naming the file) or exits 2 with a message naming it, and a failed rebuild leaves the old report."""

import json
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnbench.cli import main
from cnnbench.config import TrainConfig
from cnnbench.engine.records import SUMMARY_FIELDS
from cnnbench.study import StudySpec, run_study
from tests.conftest import TINY_MODEL


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("damaged") / "study"
    base = TrainConfig(epochs=1, limit_train=200, limit_test=100, batch_size=32, lr=0.05, precise_bn=0)
    run_study(StudySpec((TINY_MODEL,), ("mnist_demo",), (0, 1), base), out, log=lambda _: None)
    return out


VALUES = st.one_of(
    st.none(),
    st.text(max_size=8),
    st.floats(allow_nan=True, allow_infinity=True),
    st.lists(st.integers(), max_size=3),
    st.booleans(),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@st.composite
def damage(draw):
    """(file name in the run folder, how to damage it)."""
    target = draw(
        st.sampled_from(["summary.json", "metrics.csv", "predictions.npz", "misclassified.csv", "config.json"])
    )
    how = draw(
        st.sampled_from(["truncate", "garbage", "field"] if target == "summary.json" else ["truncate", "garbage"])
    )
    if how == "field":
        key = draw(st.sampled_from([*SUMMARY_FIELDS, "test_top1", "config"]))
        return target, ("field", key, draw(st.one_of(st.just("<delete>"), VALUES)))
    if how == "truncate":
        return target, ("truncate", draw(st.floats(0, 0.99)))
    return target, ("garbage", draw(st.binary(max_size=64)))


def apply(path, change):
    kind = change[0]
    if kind == "field":
        summary = json.loads(path.read_text())
        _, key, value = change
        if value == "<delete>":
            summary.pop(key, None)
        else:
            summary[key] = value
        path.write_text(json.dumps(summary))  # NaN and Infinity as json writes them
    elif kind == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * change[1])])
    else:
        path.write_bytes(change[1])


@pytest.mark.data
@pytest.mark.slow  # builds a report a dozen times
@settings(
    max_examples=int(__import__("os").environ.get("CNNBENCH_FUZZ_EXAMPLES", 12)),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(damage())
def test_report_survives_damaged_run_files(finished_study, tmp_path_factory, capsys, case):
    study = tmp_path_factory.mktemp("copy") / "study"
    shutil.copytree(finished_study, study)
    before = (study / "report.html").read_bytes()
    target, change = case
    victim = study / "runs" / f"{TINY_MODEL}-mnist_demo-seed0" / target
    if not victim.exists():
        return
    apply(victim, change)
    code = main(["report", str(study)])
    err = capsys.readouterr().err
    assert code in (0, 2) and "Traceback" not in err
    assert main(["status", str(study)]) in (0, 1)  # status reads the same files: never a traceback either
    if target == "config.json":  # evaluate reads the run's config: a clear error, never a traceback
        assert main(["evaluate", str(victim.parent)]) in (0, 2)
        assert "Traceback" not in capsys.readouterr().err
    if code == 2:
        assert (study / "report.html").read_bytes() == before  # a failed rebuild leaves the old report
    if target == "summary.json" and code == 0 and "left" in err:
        assert "summary.json" in err and f"{TINY_MODEL}-mnist_demo-seed0" in err
