import os
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from cnnbench.models import register_model

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "datasets"
DATA_ROOT = Path(os.environ.get("CNNBENCH_DATA", SHARED_DATA)).resolve()  # subprocesses run in other folders
HAVE_DATA = any((DATA_ROOT / "MNIST" / "raw").glob("train-images-idx3-ubyte*"))  # a failed download leaves the folder
TINY_MODEL = "tiny_cnn"
TINY_MODEL_WIDE = "tiny_cnn_wide"  # a second architecture, for comparisons between two models
ROUNDING_MODEL = "tiny_rounding"  # no input gradient: what a masked attack looks like


class TinyCNN(nn.Module):
    """Two conv-BN-ReLU-pool blocks and one linear layer (about 1,500 parameters): for tests about plumbing
    (folders, resuming, reports, loaders), where a full VGG or ResNet would only cost time. Laid out as VGG is
    (features, avgpool, classifier), so stages, Grad-CAM layers and the classifier are found the usual way."""

    def __init__(self, num_classes: int, in_chans: int, variant: str, width: int = 8):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


class RoundingCNN(nn.Module):
    """TinyCNN behind a rounding of its input: it learns and classifies, but its input gradient is zero everywhere,
    as in a defence that masks gradients (tests/test_attacks.py)."""

    def __init__(self, num_classes: int, in_chans: int, variant: str):
        super().__init__()
        self.features = TinyCNN(num_classes, in_chans, variant).features
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(16, num_classes)

    def forward(self, x):
        x = torch.round(x * 2) / 2
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


register_model(TINY_MODEL, min_input=8)(TinyCNN)  # a user's own model, as register_model documents
register_model(TINY_MODEL_WIDE, min_input=8)(lambda **kw: TinyCNN(**kw, width=16))
register_model(ROUNDING_MODEL, min_input=8)(RoundingCNN)


def pytest_collection_modifyitems(config, items):
    """Tests marked `data` need the real data sets: skipped, not failed, on a machine without them."""
    if HAVE_DATA or os.environ.get("CNNBENCH_TEST_DATA_MARKS") == "ignore":  # "ignore": find which tests need data
        return
    skip = pytest.mark.skip(
        reason=f"test data not found in {DATA_ROOT}: set CNNBENCH_DATA to a root laid out like ../shared/datasets"
    )
    for item in items:
        if "data" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def data_root():
    """Tests read real data from ../shared/datasets (or $CNNBENCH_DATA) and never download."""
    os.environ["CNNBENCH_DATA"] = str(DATA_ROOT)
    return DATA_ROOT


@pytest.fixture(scope="session", autouse=True)
def decoded_cache(tmp_path_factory):
    """Decoded image folders are cached in a folder of the test session's own, never in the user's cache."""
    folder = tmp_path_factory.mktemp("decoded-cache")
    os.environ["CNNBENCH_CACHE"] = str(folder)
    return folder


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def open_in_chromium(report: Path, width: int = 1280) -> dict:
    """A report as a reader's browser shows it: console and page errors, every image's natural width, the page's
    width, the elements running off it, and its text."""
    from playwright.sync_api import sync_playwright

    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(Path(report).as_uri())
        page.wait_for_load_state("load")
        seen = {
            "errors": errors,
            "image_widths": page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)"),
            "page_width": page.evaluate("document.documentElement.scrollWidth"),
            "overflowing": page.evaluate(
                "[...document.querySelectorAll('table, img, pre')]"
                ".filter(e => e.getBoundingClientRect().right > window.innerWidth + 1).length"
            ),
            "text": page.inner_text("body"),
            # tables whose content is wider than their box (they scroll sideways inside it)
            "tables_overflowing": page.evaluate(
                "[...document.querySelectorAll('table')].filter(t => t.offsetParent && t.scrollWidth > "
                "t.clientWidth + 1).length"
            ),
            # the cells a reader looks for first: each pair's verdict and each model's top-1, fully on screen
            # without scrolling sideways
            "key_cells_off_screen": page.evaluate(
                '[...document.querySelectorAll(\'td.verdict, td[data-label="test top-1"], '
                'td[data-label="p, Holm-adjusted"], td[data-label="A − B (points)"]\')]'
                ".filter(td => { const r = td.getBoundingClientRect(); const box = td.closest('table')"
                ".getBoundingClientRect(); "
                "return r.left < 0 || r.right > Math.min(window.innerWidth, box.right) + 1; })"
                ".length"
            ),
            "key_cells": page.evaluate("document.querySelectorAll('td.verdict, td[data-label=\"test top-1\"]').length"),
        }
        first_figure = page.locator("img:visible").first
        if first_figure.count():  # a figure opens at full size on a click, and closes on the next
            first_figure.click()
            seen["zoom_opens"] = page.evaluate("getComputedStyle(document.getElementById('zoom')).display") == "block"
            page.mouse.click(5, 5)
            seen["zoom_closes"] = page.evaluate("getComputedStyle(document.getElementById('zoom')).display") == "none"
        browser.close()
    return seen
