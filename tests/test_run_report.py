"""`cnnbench report RUN_DIR`: one run's report with the study report's sections, and a page that fits any screen."""

import pytest

from cnnbench.cli import main
from tests.conftest import CHROMIUM, TINY_MODEL, open_in_chromium
from tests.test_readers import make_tree


@pytest.fixture(scope="module")
def lone_run(tmp_path_factory):
    """A run trained by `cnnbench train` alone, on a small folder of colour images."""
    root = tmp_path_factory.mktemp("lone")
    tree = make_tree(root / "pets", classes=("cat", "dog", "owl"), per_class=6, size=16)
    out = root / "run"
    args = ["--model", TINY_MODEL, "--dataset", f"imagefolder:{tree}", "--epochs", "2", "--batch-size", "6"]
    assert main(["train", *args, "--out", str(out)]) == 0
    return out


def test_a_lone_run_gets_its_own_report(lone_run, capsys):
    assert main(["report", str(lone_run)]) == 0
    page = (lone_run / "report.html").read_text()
    assert "cnnbench run: run" in page and "training curves" in page and "confusion matrix" in page
    assert "misclassified images" in page and "Per-class precision" in page
    # what is missing is named with the command that makes it
    assert f"cnnbench robustness {lone_run}" in page and f"cnnbench insight {lone_run}" in page
    assert not (lone_run / "comparison.csv").exists()  # a run folder gets its report, not a study's tables


def test_the_run_report_shows_robustness_and_insight_once_measured(lone_run):
    args = ["--corruptions", "fog,contrast", "--severities", "1,5", "--attacks", "fgsm", "--eps", "1/255,8/255"]
    assert main(["robustness", str(lone_run), *args, "--limit-test", "6"]) == 0
    assert main(["insight", str(lone_run), "--cka-images", "6", "--landscape-images", "6", "--images", "2"]) == 0
    assert main(["report", str(lone_run)]) == 0
    page = (lone_run / "report.html").read_text()
    assert "robustness heat map" in page and "2 of its 15 corruptions: fog, contrast" in page
    assert "fgsm eps 1/255" in page and "fgsm eps 8/255" in page and "0.003922" not in page
    assert "Grad-CAM" in page and f"cnnbench robustness {lone_run}" not in page


def test_the_commands_say_how_to_see_the_pictures(lone_run, capsys):
    assert main(["evaluate", str(lone_run)]) == 0
    assert f"cnnbench report {lone_run}" in capsys.readouterr().out


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
@pytest.mark.parametrize("width", [1280, 400])
def test_the_page_fits_a_laptop_and_a_phone(lone_run, width):
    """No table or figure runs off the page: wide tables scroll in their own box."""
    if not (lone_run / "report.html").exists():
        assert main(["report", str(lone_run)]) == 0
    seen = open_in_chromium(lone_run / "report.html", width)
    assert seen["page_width"] <= width and seen["overflowing"] == 0


def drawn_text(label) -> str:
    """What matplotlib draws for a Text: mathtext renders without its $ delimiters; a text it does not read as
    mathtext (parse_math off, or every $ escaped) is drawn as written, escaped dollars as dollars."""
    text, is_math = label._preprocess_math(label.get_text())
    return text.replace("$", "").replace("\\mathdefault", "") if is_math else text


def test_log_axes_draw_real_tick_labels_and_class_names_stay_literal(tmp_path):
    import numpy as np

    import cnnbench.report.html  # noqa: F401  the report's imports, as when a report is written
    from cnnbench.report import plots

    plots.confusion_heatmaps(np.array([[3, 1], [0, 4]]), ["$x$", "cost in $"], tmp_path / "c.png", title="$y$ data")
    plt = plots._figure_module()
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [1e-4, 1e-2, 1e-1])
    ax.set_yscale("log")
    ax.set_title(plots.literal("$x$ and $y$"))
    fig.canvas.draw()
    ticks = [t for t in ax.get_yticklabels() if t.get_text()]
    assert ticks and not any("$" in drawn_text(t) or "\\" in drawn_text(t) for t in ticks)
    assert drawn_text(ax.title) == "$x$ and $y$"  # data, escaped where it is drawn: printed as written
    plt.close(fig)
