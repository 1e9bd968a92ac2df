"""`cnnbench models` (the zoo, one model layer by layer, the papers' tables) and `cnnbench datasets`."""

from __future__ import annotations

import sys

from ..models import VARIANTS
from .common import EXIT_USAGE, check_records_file, write_records


def add_parsers(sub) -> None:
    models = sub.add_parser(
        "models",
        help="list the model zoo; --layers: one model layer by layer; --table: the papers' configuration tables",
    )
    models.set_defaults(func=cmd_models)
    models.add_argument("pattern", nargs="?", help="shell-style filter, e.g. 'vgg*'; with --layers, a model name")
    models.add_argument(
        "--params", action="store_true", help="also count parameters (10 classes, 3x32x32, both variants)"
    )
    models.add_argument(
        "--layers",
        action="store_true",
        help="one row per layer (type, output shape, parameters, "
        "MACs, activation memory at batch 1) with stage subtotals, for the model named",
    )
    models.add_argument(
        "--table",
        choices=("vgg", "resnet"),
        default=None,
        help="the VGG (Table 1) or ResNet "
        "(Table 2) configuration table in Markdown, with parameters and MACs at 224 px, 1000 classes",
    )
    models.add_argument("--variant", choices=VARIANTS, default="auto", help="with --layers (default auto)")
    models.add_argument("--input", default="3x32x32", help="with --layers: C x H x W of one image (default 3x32x32)")
    models.add_argument("--num-classes", type=int, default=10, help="with --layers (default 10)")
    models.add_argument(
        "--width", type=float, default=1.0, help="with --layers: every layer's channels times this (default 1)"
    )
    models.add_argument("--out", default=None, help="with --layers: also save the rows to FILE.csv or FILE.json")

    ds = sub.add_parser("datasets", help="list data sets and whether they are found locally")
    ds.set_defaults(func=cmd_datasets)
    ds.add_argument("--data-dir", default=None, help="data root to look in")


def cmd_models(args) -> int:
    import torch

    from ..models import create_model, list_models

    if args.table:
        from ..analysis.paper_tables import paper_table

        print(paper_table(args.table), end="")
        return 0
    if args.layers:
        return _print_layers(args)
    names = list_models(args.pattern)
    if not names:
        print(f"no model matches {args.pattern!r}", file=sys.stderr)
        return EXIT_USAGE
    if args.params:
        print(f"{'model':<14} {'params (small)':>15} {'params (paper)':>15}")
        for n in names:
            with torch.device("meta"):  # shapes only: counting needs no memory or initialisation
                counts = [sum(p.numel() for p in create_model(n, variant=v).parameters()) for v in ("small", "paper")]
            print(f"{n:<14} {counts[0]:>15,} {counts[1]:>15,}")
    else:
        print("\n".join(names))
    return 0


def _print_layers(args) -> int:
    from ..analysis.architecture import LAYER_COLUMNS, grand_total, model_layer_table, stage_totals
    from ..analysis.profile import parse_input
    from ..errors import ConfigError

    if not args.pattern:
        raise ConfigError("--layers needs a model name, for example `cnnbench models resnet18 --layers`.")
    check_records_file(args.out)
    if args.num_classes < 1:
        raise ConfigError(f"--num-classes must be positive (got {args.num_classes}).")
    shape = parse_input(args.input)
    variant, rows = model_layer_table(args.pattern, args.variant, shape, args.num_classes, args.width)
    print(
        f"{args.pattern} ({variant}), input {args.input}, {args.num_classes} classes; activation = the layer's "
        "output at batch 1, float32 (in-place layers reuse their input's)"
    )
    print(f"{'layer':<24} {'type':<18} {'output':<16} {'params':>12} {'MACs':>14} {'activation':>11}")
    for r in rows:
        shown = "x".join(map(str, r.output_shape))
        print(
            f"{r.name:<24} {r.type:<18} {shown:<16} {r.params:>12,} {r.macs:>14,} "
            f"{r.activation_bytes / 1024:>8,.0f} KiB"
        )
    print(f"\n{'stage':<10} {'works at':<9} {'output':<16} {'params':>12} {'MACs':>14} {'activation':>11}")
    for s in stage_totals(rows):
        print(
            f"{s['stage']:<10} {s['works_at'] or '-':<9} {s['output_shape']:<16} {s['params']:>12,} {s['macs']:>14,} "
            f"{s['activation_bytes'] / 1024:>8,.0f} KiB"
        )
    total = grand_total(rows)
    print(
        f"{'total':<10} {'':<9} {'':<16} {total['params']:>12,} {total['macs']:>14,} "
        f"{total['activation_bytes'] / 1024:>8,.0f} KiB"
    )
    if args.out:
        write_records(args.out, [r.to_dict() for r in rows], LAYER_COLUMNS)
    return 0


def cmd_datasets(args) -> int:
    from ..data.sources import SOURCES, locate, resolve_data_root

    root = resolve_data_root(args.data_dir)
    print(f"data root: {root}")
    for name, (desc, _) in SOURCES.items():
        where = locate(name, args.data_dir)
        status = f"found: {where}" if where else "not found (downloaded on first use when online)"
        print(f"{name:<14} {desc:<48} {status}")
    print(
        f"{'imagefolder:PATH':<14} a folder or .tar of <class>/* (a test split is held out: --test-split), or "
        f"of train/<class>/* and test/<class>/*"
    )
    return 0
