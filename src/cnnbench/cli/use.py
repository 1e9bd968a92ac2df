"""Using a trained run: `cnnbench predict` (image files) and `cnnbench export` (ONNX, torch.export)."""

from __future__ import annotations

import sys
from pathlib import Path

from .common import device_option


def add_parsers(sub) -> None:
    pred = sub.add_parser(
        "predict", help="class names and probabilities for image files, with a run's own preprocessing"
    )
    pred.set_defaults(func=cmd_predict)
    pred.add_argument("run_dir", metavar="RUN_DIR", help="a finished run folder (with its checkpoint)")
    pred.add_argument("images", metavar="IMAGE|FOLDER", nargs="+", help="image files, or folders searched recursively")
    pred.add_argument("--top-k", type=int, default=5, help="classes shown per image (default 5)")
    pred.add_argument("--out", default=None, help="also write the predictions to FILE.csv")
    device_option(pred)

    exp = sub.add_parser(
        "export",
        help="a trained run as an ONNX file or a torch.export program, with its preprocessing in a JSON file beside it",
    )
    exp.set_defaults(func=cmd_export)
    exp.add_argument("run_dir", metavar="RUN_DIR", help="a finished run folder (with its checkpoint)")
    exp.add_argument("--format", default="onnx", choices=("onnx", "pt2"), help="onnx (default) or pt2 (torch.export)")
    exp.add_argument("--out", default=None, help="file to write (default RUN_DIR/model.onnx or model.pt2)")


def cmd_predict(args) -> int:
    from ..engine.predict import image_files, load_trained, predict_files
    from ..engine.runtime import resolve_device
    from ..errors import ConfigError
    from ..fileio import write_csv

    if args.top_k < 1:
        raise ConfigError(f"--top-k must be at least 1 (got {args.top_k}).")
    if args.out and not args.out.endswith(".csv"):
        raise ConfigError(f"--out must name a .csv file (got {args.out!r}).")
    device = resolve_device(args.device)
    model, prep = load_trained(Path(args.run_dir), device)
    files, problems = image_files(args.images)
    rows, failed = predict_files(model, prep, files, device, args.top_k)
    k = min(args.top_k, len(prep.classes))
    for r in rows:
        print(f"{r['file']}: " + ", ".join(f"{r[f'class_{i}']} {r[f'prob_{i}']:.1%}" for i in range(1, k + 1)))
    for p in problems + failed:
        print(f"cnnbench: skipped {p}", file=sys.stderr)
    if args.out and rows:
        columns = ["file"] + [c for i in range(1, k + 1) for c in (f"class_{i}", f"prob_{i}")]
        write_csv(args.out, rows, columns)
        print(f"wrote {args.out}")
    if not rows:
        raise ConfigError(
            f"No image could be predicted ({len(problems + failed)} skipped, listed above). Give image "
            "files (PNG, JPEG, ...) or folders holding them."
        )
    return 0


def cmd_export(args) -> int:
    from ..engine.export import export_run

    model_file, meta = export_run(args.run_dir, args.format, args.out)
    print(f"wrote {model_file} and {meta} (classes, input shape, mean and std: the model takes normalised images)")
    return 0
