"""`cnnbench export`: a trained run as a file other programs load (ONNX, or a torch.export program), with its
preprocessing in a JSON file beside it."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ConfigError
from ..fileio import write_json
from .predict import load_trained

FORMATS = {"onnx": ".onnx", "pt2": ".pt2"}


def export_run(run_dir: str | Path, fmt: str = "onnx", out: str | Path | None = None) -> tuple[Path, Path]:
    """Write the run's model (float32, CPU, eval mode, any batch size) and ``<out>.json`` with its classes, input
    shape, mean and std. Returns both paths.

    The model takes the normalised image (see the JSON's "input"), not raw pixels, and returns logits.
    TorchScript is not offered: ``torch.jit`` is deprecated in current PyTorch; pt2 is its successor
    (``torch.export.load(path).module()``)."""
    if fmt not in FORMATS:
        raise ConfigError(f"Unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}.")
    run_dir = Path(run_dir)
    out = Path(out) if out else run_dir / f"model{FORMATS[fmt]}"
    if out.suffix.lower() == ".json":
        raise ConfigError(
            f"--out {out}: the preprocessing is written to a .json file beside the model, so the model itself needs "
            f"another name, such as {out.with_suffix(FORMATS[fmt])}. Nothing was written."
        )
    if out.is_dir():
        raise ConfigError(
            f"--out {out} is a folder: give a file name inside it, such as {out / ('model' + FORMATS[fmt])}."
        )
    model, prep = load_trained(run_dir, torch.device("cpu"))
    out.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, *prep.input_shape)
    batch = torch.export.Dim("batch", min=1)
    if fmt == "pt2":
        program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
        torch.export.save(program, out)
    else:
        try:
            import onnxscript  # noqa: F401  (torch.onnx's exporter needs it; a clear message if it is missing)
        except ImportError:
            raise ConfigError(
                "ONNX export needs the onnx and onnxscript packages: pip install 'cnnbench[onnx]' "
                "(or use --format pt2)."
            ) from None
        torch.onnx.export(
            model,
            (example,),
            str(out),
            input_names=["image"],
            output_names=["logits"],
            dynamic_shapes=({0: batch},),
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    meta = out.with_suffix(".json")
    write_json(meta, {"model": str(out.name), "format": fmt, **prep.to_dict()})
    return out, meta
