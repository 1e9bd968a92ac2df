import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "datasets"


@pytest.fixture(scope="session", autouse=True)
def data_root():
    """Tests read real data from ../shared/datasets (or $CNNBENCH_DATA) and never download."""
    root = Path(os.environ.get("CNNBENCH_DATA", SHARED_DATA)).resolve()  # subprocesses run in other folders
    if not (root / "MNIST" / "raw").exists():
        pytest.exit(f"test data not found in {root}: set CNNBENCH_DATA to a root laid out like ../shared/datasets", 2)
    os.environ["CNNBENCH_DATA"] = str(root)
    return root


@pytest.fixture(scope="session", autouse=True)
def decoded_cache(tmp_path_factory):
    """Decoded image folders are cached in a folder of the test session's own, never in the user's cache."""
    folder = tmp_path_factory.mktemp("decoded-cache")
    os.environ["CNNBENCH_CACHE"] = str(folder)
    return folder
