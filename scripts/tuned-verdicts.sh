#!/usr/bin/env bash
# The tuned verdicts (reduced: width 0.25, 20,000 training images, CPU); resumable: rerun the same commands.
cd /work/main; . .venv/bin/activate; export CNNBENCH_DATA=/work/shared/datasets
SPACE="lr=0.01:0.3:log,weight_decay=1e-5:1e-3:log,label_smoothing=0,0.1,0.2"
cnnbench compare --preset modern --datasets cifar10 --width 0.25 --limit-train 20000 --val-split 2000 --epochs 4 \
  --tune "$SPACE" --trials 8 --seeds 1,2,3,4,5 --no-dynamics --out studies/tuned-cifar10-w025
cnnbench compare --preset modern --datasets mnist --width 0.25 --limit-train 20000 --val-split 2000 --epochs 2 \
  --tune "$SPACE" --trials 8 --seeds 1,2,3,4,5 --no-dynamics --out studies/tuned-mnist-w025
