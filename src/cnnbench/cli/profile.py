"""`cnnbench profile`: parameters, MACs/FLOPs, memory and measured throughput of models."""

from __future__ import annotations

from ..config import COMPILE_MODES, PRECISIONS
from ..models import VARIANTS
from .common import bool_flag, check_records_file, csv_list, device_option, write_records


def add_parser(sub) -> None:
    prof = sub.add_parser("profile", help="parameters, MACs/FLOPs, memory and measured throughput of models")
    prof.set_defaults(func=run)
    prof.add_argument(
        "--models", default="vgg16_bn,resnet18", help="comma-separated model names (default vgg16_bn,resnet18)"
    )
    prof.add_argument("--input", default="3x32x32", help="C x H x W of one image (default 3x32x32)")
    prof.add_argument("--num-classes", type=int, default=10, help="classifier outputs (default 10)")
    prof.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="images per timed step (default: 128 at 32x32 on a CPU, fewer for larger images down to 8; 512 on a GPU)",
    )
    prof.add_argument("--variant", choices=VARIANTS, default="auto", help="the model variant (default auto)")
    prof.add_argument(
        "--width", type=float, default=1.0, help="every layer's channels times this (default 1: as published)"
    )
    prof.add_argument(
        "--precision", choices=PRECISIONS, default="auto", help="auto: bf16 where the hardware runs it fast (default)"
    )
    device_option(prof)
    prof.add_argument("--train", action="store_true", help="also time training steps and measure peak memory")
    prof.add_argument(
        "--seconds",
        type=float,
        default=3.0,
        help="time budget per model and measurement: as many timed steps as fit, at least one (default 3)",
    )
    prof.add_argument(
        "--repeats", type=int, default=50, help="timed steps at most; the median is reported (default 50)"
    )
    prof.add_argument(
        "--no-timing",
        dest="timing",
        action="store_false",
        help="parameters and MACs only, at once (on the meta device: no weights made, nothing timed)",
    )
    bool_flag(prof, "channels-last", "NHWC memory format for convolutions (default on, as in train)")
    prof.set_defaults(channels_last=True)
    prof.add_argument("--compile", action="store_true", help="time torch.compile'd steps (compiling timed apart)")
    prof.add_argument(
        "--compile-mode",
        choices=COMPILE_MODES,
        default="default",
        help="torch.compile mode; reduce-overhead captures CUDA graphs (default: default)",
    )
    prof.add_argument(
        "--out", default=None, help="also save the records to FILE.json or FILE.csv (default: print only)"
    )


def run(args) -> int:
    from ..analysis.profile import PROFILE_COLUMNS, ProfileConfig, parse_input, profile_model
    from ..errors import ConfigError
    from ..models.registry import check_model_name

    models = csv_list(args.models, "models")
    for m in models:
        check_model_name(m)
    if (args.batch_size is not None and args.batch_size < 1) or args.repeats < 1 or args.num_classes < 1:
        raise ConfigError("--batch-size, --repeats and --num-classes must be positive.")
    if not args.seconds > 0:
        raise ConfigError(f"--seconds must be a positive time budget, such as 3 (got {args.seconds}).")
    check_records_file(args.out)
    cfg = ProfileConfig(
        input_shape=parse_input(args.input),
        num_classes=args.num_classes,
        batch_size=args.batch_size,
        variant=args.variant,
        width=args.width,
        precision=args.precision,
        device=args.device,
        train=args.train,
        repeats=args.repeats,
        seconds=args.seconds,
        timing=args.timing,
        channels_last=args.channels_last,
        compile=args.compile,
        compile_mode=args.compile_mode,
    )
    header = (
        f"{'model':<14} {'variant':<7} {'params':>12} {'MACs':>10} {'FLOPs':>10} {'infer img/s':>12} "
        f"{'train img/s':>12} {'peak MB':>9}"
    )
    batch = "no timing" if not args.timing else f"batch {args.batch_size or 'auto'}, up to {args.seconds:g} s a timing"
    print(f"input {args.input}, {batch}, {args.num_classes} classes; FLOPs = 2 x MACs (torch.utils.flop_counter)")
    print(header)
    records = []
    for m in models:
        r = profile_model(m, cfg)
        records.append(r)
        fmt = lambda v, spec: format("-", spec[:-3]) if v is None else format(v, spec)  # noqa: E731
        print(
            f"{r['model']:<14} {r['variant']:<7} {r['params']:>12,} {r['macs'] / 1e9:>9.3f}G {r['flops'] / 1e9:>9.3f}G "
            f"{fmt(r['infer_images_per_s'], '>12.0f')} {fmt(r['train_images_per_s'], '>12.0f')} "
            f"{fmt(r['peak_memory_mb'], '>9.0f')}"
        )
    for r in records:
        for what in ("infer", "train"):
            if r.get(f"{what}_compile_s") is not None:
                print(f"{r['model']}: compiling for {what} took {r[f'{what}_compile_s']:.1f}s (not in the rates)")
            if r.get(f"{what}_compile_error"):
                print(
                    f"{r['model']}: torch.compile failed for {what} ({r[f'{what}_compile_error']}); eager rates shown"
                )
    if records and args.timing:
        print(
            f"device {records[0]['device']}, precision {records[0]['precision']}, "
            f"{'channels-last' if cfg.channels_last else 'contiguous'} memory format"
        )
    if args.out:
        write_records(args.out, records, PROFILE_COLUMNS)
    return 0
