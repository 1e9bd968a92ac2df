#!/usr/bin/env bash
# GPU numbers in one device call each (sized for at most 9 minutes on an H100 or H200).
#
#   bash benchmarks/gpu_check.sh pack   # here: MNIST and the CIFAR-10 JPEG copy, gzipped, into .devdata/ (about 31 MB)
#   bash benchmarks/gpu_check.sh run    # there: the `device` tool's run, carry [".devdata"], timeout_s 570
#   bash benchmarks/gpu_check.sh fast          # there: training images/s, eager against compiled and
#                                              # CUDA graphs, batch 64-1024 (about 6 minutes)
#   bash benchmarks/gpu_check.sh fast-recipe   # there: the fast preset's 3 seeds for both models and
#                                              # its time-to-accuracy table (about 6 minutes on an H100, estimated)
#
# The device machine has PyTorch but not cnnbench installed, so `run` uses the checkout's src/ on PYTHONPATH.
# Results are copied under $OUT as each step ends, so a call cut off at its limit still returns the finished
# steps: gpu-check.log (every table), profile-32px.json, profile-224px.json, throughput.json, modern-gpu.tar.gz
# (the modern preset's study on the GPU: report, metrics, summaries; no checkpoints). `fast` writes gpu-check.log,
# profile-eager.json, profile-reduce-overhead.json, profile-max-autotune-no-cudagraphs.json; `fast-recipe` writes
# gpu-check.log and fast-gpu.tar.gz.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-run}" = pack ]; then
  src=${CNNBENCH_DATA:-../shared/datasets}
  mkdir -p .devdata
  gzip -1 -c "$src/cifar10-jpeg.tar" > .devdata/cifar10-jpeg.tar.gz
  tar -C "$src" -czf .devdata/MNIST.tar.gz MNIST
  grep -qsx '/.devdata/' .git/info/exclude || echo '/.devdata/' >> .git/info/exclude
  du -sh .devdata
  exit 0
fi

out=${OUT:-/tmp/gpu-check-out}
work=/tmp/gpu-check
mkdir -p "$out" "$work/data"
gunzip -c .devdata/cifar10-jpeg.tar.gz > "$work/data/cifar10-jpeg.tar"
tar -C "$work/data" -xzf .devdata/MNIST.tar.gz
export CNNBENCH_DATA=$work/data PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
log=$out/gpu-check.log
$py -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'gpu_check.sh run needs a CUDA GPU: run it through the device tool.')"

step() {  # step TITLE COMMAND...: run it, log it, keep going if it fails (later steps are independent)
  local title=$1; shift
  echo -e "\n## $title  ($(date -u +%H:%M:%S))\n\$ $*" | tee -a "$log"
  "$@" 2>&1 | tee -a "$log" || echo "step failed: $title" | tee -a "$log"
}

mode=${1:-run}
step "machine" bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; \
  $py -c 'import torch, torchvision; print(\"torch\", torch.__version__, \"torchvision\", torchvision.__version__)'"
if [ "$mode" = fast ]; then
  # Training images/s of vgg16_bn and resnet18 at batch 64-1024 eager, and compiled at 128 and 1024 (CUDA graphs)
  # and 128 (max-autotune without graphs); compiling is timed apart (train_compile_s). About 6 minutes.
  runs=("eager 64 128 256 512 1024" "reduce-overhead 128 1024" "max-autotune-no-cudagraphs 128")
  for spec in "${runs[@]}"; do
    read -r compile batches <<< "$spec"
    flags=(); [ "$compile" != eager ] && flags=(--compile --compile-mode "$compile")
    for batch in $batches; do
      step "profile $compile, batch $batch" $py -m cnnbench profile --models vgg16_bn,resnet18 --batch-size "$batch" \
        --train --device cuda --repeats 20 "${flags[@]}" --out "$work/profile-$compile-$batch.json"
    done
    $py -c "import json, sys; json.dump([r for f in sys.argv[2:] for r in json.load(open(f))], open(sys.argv[1], 'w'), indent=1)" \
      "$out/profile-$compile.json" "$work"/profile-"$compile"-*.json || true
  done
  echo "done $(date -u +%H:%M:%S)" | tee -a "$log"
  exit 0
fi
if [ "$mode" = fast-recipe ]; then
  # The fast preset's 3 seeds for both models (eager: batch 512 is not launch-bound) and its time-to-accuracy table.
  step "fast preset, 3 seeds" $py -m cnnbench compare --preset fast --seeds 0,1,2 --device cuda --no-dynamics \
    --out "$work/fast-gpu"
  step "time to accuracy table" $py benchmarks/time_to_accuracy.py --study "$work/fast-gpu" \
    --targets cifar10:vgg16_bn=0.93,cifar10:resnet18=0.94
  [ -d "$work/fast-gpu" ] && tar -C "$work" --exclude checkpoints --exclude predictions.npz -czf "$out/fast-gpu.tar.gz" fast-gpu
  echo "done $(date -u +%H:%M:%S)" | tee -a "$log"
  exit 0
fi
step "profile, 32 px" $py -m cnnbench profile --models vgg16_bn,resnet18 --batch-size 128 --train --device cuda \
  --out "$out/profile-32px.json"
step "profile, 224 px" $py -m cnnbench profile --models vgg16,resnet18,resnet50 --input 3x224x224 --num-classes 1000 \
  --batch-size 128 --train --device cuda --out "$out/profile-224px.json"
step "throughput against the common recipe" $py benchmarks/throughput.py --device cuda --images 20000 --workers 2 \
  --json "$out/throughput.json"
step "scaling with batch size" $py benchmarks/scaling.py --device cuda --batch-sizes 32,64,128,256,512,1024
step "modern preset (time to accuracy)" $py -m cnnbench compare --preset modern --device cuda --out "$work/modern-gpu"
step "time to accuracy table" $py benchmarks/time_to_accuracy.py --study "$work/modern-gpu" \
  --targets mnist:vgg16_bn=0.99,mnist:resnet18=0.992,cifar10:vgg16_bn=0.865,cifar10:resnet18=0.785
[ -d "$work/modern-gpu" ] && tar -C "$work" --exclude checkpoints --exclude predictions.npz -czf "$out/modern-gpu.tar.gz" modern-gpu
echo "done $(date -u +%H:%M:%S)" | tee -a "$log"
