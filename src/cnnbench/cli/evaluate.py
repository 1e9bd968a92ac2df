"""`cnnbench evaluate`: a run's checkpoint re-evaluated in full detail."""

from __future__ import annotations

from .common import device_option


def add_parser(sub) -> None:
    ev = sub.add_parser("evaluate", help="confusion matrix, per-class metrics and misclassified images of a run")
    ev.set_defaults(func=run)
    ev.add_argument("run_dir", help="a run folder written by `cnnbench train`")
    device_option(ev)


def run(args) -> int:
    from ..engine.evaluate_run import evaluate_run
    from ..report.plots import misclassified_figure

    r = evaluate_run(args.run_dir, args.device, draw=misclassified_figure)
    print(
        f"{args.run_dir} (epoch {r['epoch']}): test loss {r['loss']:.4f}, top-1 {r['top1']:.2%}, top-5 "
        f"{r['top5']:.2%}, "
        f"macro F1 {r['macro_f1']:.4f}, {r['misclassified']} of {r['test_images']} misclassified"
    )
    width = max(len(c["class"]) for c in r["per_class"])
    print(f"{'class':<{width}}  precision  recall  f1      support")
    for c in r["per_class"]:
        print(f"{c['class']:<{width}}  {c['precision']:.4f}     {c['recall']:.4f}  {c['f1']:.4f}  {c['support']}")
    print("wrote evaluation.json, confusion_matrix.csv, per_class.csv, misclassified.csv, misclassified.png")
    print(f"pictures: cnnbench report {args.run_dir}")
    return 0
