#!/usr/bin/env bash
# The shared-recipe verdicts beside the tuned ones (scripts/tuned-verdicts.sh): the same models, data, slice, width,
# epochs and test seeds, every model trained with the modern preset's one recipe. Resumable: rerun it.
cd "$(dirname "$0")/.." || exit 1
export CNNBENCH_DATA="${CNNBENCH_DATA:-$(cd .. && pwd)/shared/datasets}"
cnnbench compare --preset modern --datasets cifar10 --width 0.25 --limit-train 20000 --val-split 2000 --epochs 4 \
  --seeds 1,2,3,4,5 --no-dynamics --out studies/shared-cifar10-w025
cnnbench compare --preset modern --datasets mnist --width 0.25 --limit-train 20000 --val-split 2000 --epochs 2 \
  --seeds 1,2,3,4,5 --no-dynamics --out studies/shared-mnist-w025
