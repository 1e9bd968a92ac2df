"""The study's own Tables 3 and 4, as printed, shown beside a study's results on the same data set."""

from __future__ import annotations

# The study's Tables 3 and 4 (loss, top-1, top-5, training time as printed), for side-by-side display.
STUDY_TABLES = {
    "mnist": ("Table 3", [("VGG16", 0.0333, 0.990, 0.999, "10'40''"), ("ResNet18", 0.0329, 0.992, 1.0, "2'55''")]),
    "cifar10": ("Table 4", [("VGG16", 0.4397, 0.865, 0.993, "18'6''"), ("ResNet18", 0.6462, 0.785, 0.986, "10'4''")]),
}


def study_reference(dataset: str):
    """The study's table for this data set (its MNIST table also stands beside the shipped MNIST subset)."""
    return STUDY_TABLES.get(dataset.removesuffix("_demo"))
