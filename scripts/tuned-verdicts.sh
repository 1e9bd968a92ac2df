#!/usr/bin/env bash
# The tuned verdicts of docs/RESULTS.md ("Fair verdicts"), reduced to fit 2 CPU cores: width 0.25, a 20,000-image
# class-balanced slice (2,000 of it held out for validation), the full test set. Each model gets 8 TPE trials over
# the same space on validation, then trains its own choice on test seeds 1-5. Resumable: rerun it.
cd "$(dirname "$0")/.." || exit 1
export CNNBENCH_DATA="${CNNBENCH_DATA:-$(cd .. && pwd)/shared/datasets}"
SPACE="lr=0.01:0.3:log,weight_decay=1e-5:1e-3:log,label_smoothing=0,0.1,0.2"
cnnbench compare --preset modern --datasets cifar10 --width 0.25 --limit-train 20000 --val-split 2000 --epochs 4 \
  --tune "$SPACE" --trials 8 --seeds 1,2,3,4,5 --no-dynamics --out studies/tuned-cifar10-w025
cnnbench compare --preset modern --datasets mnist --width 0.25 --limit-train 20000 --val-split 2000 --epochs 2 \
  --tune "$SPACE" --trials 8 --seeds 1,2,3,4,5 --no-dynamics --out studies/tuned-mnist-w025
