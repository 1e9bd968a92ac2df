#!/usr/bin/env bash
# GPU numbers in one device call each (sized for at most 9 minutes on an H100 or H200).
#
#   bash benchmarks/gpu_check.sh pack   # here: MNIST and the CIFAR-10 JPEG copy, gzipped, into .devdata/ (about 31 MB)
#   bash benchmarks/gpu_check.sh run    # there: the `device` tool's run, carry [".devdata"], timeout_s 570
#   bash benchmarks/gpu_check.sh fast          # there: training images/s, eager against compiled and
#                                              # CUDA graphs, batch 64-1024 (about 6 minutes)
#   bash benchmarks/gpu_check.sh studies       # there: the declared protocols' seeds (CIFAR-10 4-6, with and
#                                              # without label smoothing; MNIST 1-5) and their robustness with
#                                              # AutoAttack (about 8 minutes on an H200, estimated)
#   bash benchmarks/gpu_check.sh fast-recipe   # there: the fast preset tuned on validation (3 candidates side by
#                                              # side), then 3 fresh seeds of both models on the test set, one run
#                                              # at a time, and its time-to-accuracy table (about 8-9 minutes)
#   CHOSEN= DEADLINE=500 bash benchmarks/gpu_check.sh fast-recipe   # there: the seeds only (the tuning is done),
#                                              # then CUDA-graph training at batch 128 and 1024 while time allows
#
# The working tree that travels to the device must stay under 64 MiB, and the committed studies/ alone is larger:
# before a call, `git rm -r -q --cached studies && echo '/studies/' >> .git/info/exclude`; after it, `git reset -q`
# and delete that exclude line (nothing in studies/ is touched).
#
# The device machine has PyTorch but not cnnbench installed, so `run` uses the checkout's src/ on PYTHONPATH.
# Results are copied under $OUT as each step ends, so a call cut off at its limit still returns the finished
# steps: gpu-check.log (every table), profile-32px.json, profile-224px.json, throughput.json, modern-gpu.tar.gz
# (the modern preset's study on the GPU: report, metrics, summaries; no checkpoints). `fast` writes gpu-check.log,
# profile-eager.json, profile-reduce-overhead.json, profile-max-autotune-no-cudagraphs.json; `fast-recipe` writes
# gpu-check.log, fast-tune.tar.gz (the candidates), fast-gpu.tar.gz (the seeds) and profile-*.json.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-run}" = pack ]; then
  src=${CNNBENCH_DATA:-../shared/datasets}
  mkdir -p .devdata
  gzip -1 -c "$src/cifar10-jpeg.tar" > .devdata/cifar10-jpeg.tar.gz
  tar -C "$src" -czf .devdata/MNIST.tar.gz MNIST
  # AutoAttack's reference code (cnnbench[attacks]) for `studies`, its Python files only (the wheel ships 45 MB of
  # example weights): the device machine has no package registry
  aa=$(python3 -c "import pyautoattack, os; print(os.path.dirname(pyautoattack.__file__))")
  rm -rf .devdata/site && mkdir -p .devdata/site/pyautoattack && cp "$aa"/*.py .devdata/site/pyautoattack/
  mkdir -p .git/info && { grep -qsx '/.devdata/' .git/info/exclude || echo '/.devdata/' >> .git/info/exclude; }
  du -sh .devdata
  exit 0
fi

out=${OUT:-/tmp/gpu-check-out}
work=/tmp/gpu-check
mkdir -p "$out" "$work/data"
gunzip -c .devdata/cifar10-jpeg.tar.gz > "$work/data/cifar10-jpeg.tar"
tar -C "$work/data" -xzf .devdata/MNIST.tar.gz
export CNNBENCH_DATA=$work/data PYTHONPATH=$PWD/src:$PWD/.devdata/site${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
log=$out/gpu-check.log
dev=${DEVICE:-cuda}  # DEVICE=cpu with STUDY_FLAGS/ROBUST_FLAGS (a few images, one epoch): a dry run of `studies` here
[ "$dev" = cpu ] || $py -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'gpu_check.sh run needs a CUDA GPU: run it through the device tool.')"

step() {  # step TITLE COMMAND...: run it, log it, keep going if it fails (later steps are independent)
  local title=$1; shift
  echo -e "\n## $title  ($(date -u +%H:%M:%S))\n\$ $*" | tee -a "$log"
  "$@" 2>&1 | tee -a "$log" || echo "step failed: $title" | tee -a "$log"
}

start=$(date +%s)
archive() {  # archive NAME [FOLDER]: $work/FOLDER (default NAME) as $OUT/NAME.tar.gz without checkpoints or logits,
  # replacing an older copy, so that a call cut off at its limit still returns what finished
  local folder=${2:-$1}
  [ -d "$work/$folder" ] || return 0
  tar -C "$work" --exclude checkpoints --exclude predictions.npz -czf "$out/$1.tmp.tgz" "$folder" \
    && mv "$out/$1.tmp.tgz" "$out/$1.tar.gz" && echo "archived $1 at $(( $(date +%s) - start )) s" | tee -a "$log"
}

mode=${1:-run}
step "machine" bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; \
  $py -c 'import torch, torchvision; print(\"torch\", torch.__version__, \"torchvision\", torchvision.__version__)'"
if [ "$mode" = fast ]; then
  # Training images/s of vgg16_bn and resnet18 at batch 64-1024 eager, and compiled at 128 and 1024 (CUDA graphs)
  # and 128 (max-autotune without graphs); compiling is timed apart (train_compile_s). About 6 minutes.
  # FAST_RUNS="eager 128 1024;reduce-overhead 128": a shorter set, where less device time is left
  IFS=';' read -ra runs <<< "${FAST_RUNS:-eager 64 128 256 512 1024;reduce-overhead 128 1024;max-autotune-no-cudagraphs 128}"
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
if [ "$mode" = studies ]; then
  # The CIFAR-10 and MNIST seeds that the declared protocols still need, trained side by side on the one GPU
  # (launch-bound at batch 64, so concurrent runs overlap; their training times are not speed figures), then
  # robustness with AutoAttack, PGD-20 x 2 restarts and the masking checks, and the transfer attacks:
  #   modern-cifar10-456: the modern preset, seeds 4-6 (4 and 5 complete the five-seed confirmation protocol)
  #   modern-cifar10-ls0: the same without label smoothing, seeds 4-6 (label smoothing's effect on robustness)
  #   modern-mnist-confirm: MNIST, five declared seeds 1-5
  # Each study is archived under $OUT (no checkpoints or logits) as soon as it is complete, and everything again
  # at the deadline, so a call cut off returns what finished.
  start=$(date +%s)
  deadline=${DEADLINE:-540}
  ( sleep "$deadline"; echo "deadline: archiving what exists" | tee -a "$log"
    for s in modern-mnist-confirm modern-cifar10-456 modern-cifar10-ls0; do archive $s; done ) &
  watchdog=$!
  train() {  # train NAME WORKERS FLAGS...: one study through the local launcher, all workers on the GPU
    local name=$1 workers=$2; shift 2
    # shellcheck disable=SC2086  # STUDY_FLAGS: several flags
    $py -m cnnbench compare --preset modern --device "$dev" --launcher local --workers "$workers" --threads 2 \
      --out "$work/$name" "$@" ${STUDY_FLAGS:-} > "$work/$name.log" 2>&1 || echo "study failed: $name" | tee -a "$log"
    tail -n 30 "$work/$name.log" >> "$log"
  }
  robust() {  # robust NAME: every run in parallel, then the transfer attacks and the report
    local name=$1 pids=()
    for run in "$work/$name"/runs/*/; do
      # shellcheck disable=SC2086  # ROBUST_FLAGS: several flags
      OMP_NUM_THREADS=2 $py -m cnnbench robustness "$run" --device "$dev" --limit-test 1000 \
        --attacks fgsm,pgd,autoattack --pgd-steps 20 --pgd-restarts 2 ${ROBUST_FLAGS:-} > "$run/robustness.log" 2>&1 &
      pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || echo "robustness failed in $name" | tee -a "$log"; done
    cat "$work/$name"/runs/*/robustness.log >> "$log"
    $py -c "import sys; from cnnbench.analysis.robustness.transfer import study_transfer; \
study_transfer(__import__('pathlib').Path(sys.argv[1]), sys.argv[2])" "$work/$name" "$dev" 2>&1 | tee -a "$log"
    $py -m cnnbench report "$work/$name" 2>&1 | tail -n 3 | tee -a "$log"
  }
  echo "## studies ($(date -u +%H:%M:%S))" | tee -a "$log"
  train modern-cifar10-456 6 --datasets cifar10 --seeds 4,5,6 &
  cifar=$!
  train modern-mnist-confirm 5 --datasets mnist --seeds 1,2,3,4,5
  archive modern-mnist-confirm
  train modern-cifar10-ls0 6 --datasets cifar10 --seeds 4,5,6 --label-smoothing 0 &
  ls0=$!
  wait $cifar; archive modern-cifar10-456
  robust modern-cifar10-456; archive modern-cifar10-456
  wait $ls0; archive modern-cifar10-ls0
  robust modern-cifar10-ls0; archive modern-cifar10-ls0
  kill $watchdog 2>/dev/null || true
  echo "studies done $(date -u +%H:%M:%S), $(( $(date +%s) - start )) s" | tee -a "$log"
  # the GPU is idle again: if time is left, `fast`'s eager half (training images/s against batch size, alone)
  for batch in 64 128 256 512 1024; do
    [ $(( $(date +%s) - start )) -lt $(( deadline - 20 )) ] || break
    step "profile eager, batch $batch" $py -m cnnbench profile --models vgg16_bn,resnet18 --batch-size "$batch" \
      --train --device "$dev" --repeats 20 --out "$work/profile-eager-$batch.json"
    $py -c "import json, sys; json.dump([r for f in sys.argv[2:] for r in json.load(open(f))], open(sys.argv[1], 'w'), indent=1)" \
      "$out/profile-eager.json" "$work"/profile-eager-*.json || true
  done
  echo "done $(date -u +%H:%M:%S), $(( $(date +%s) - start )) s" | tee -a "$log"
  exit 0
fi
if [ "$mode" = fast-recipe ]; then
  # The fast preset tuned on validation, then fresh seeds read once on the test set (about 8-9 minutes on an H200):
  #  1. tuning: one candidate study per setting (TUNE_CANDIDATES, names as benchmarks/fast_recipe.py reads them),
  #     both models, seed 0, 5,000 training images held out; all candidates train side by side on the one GPU
  #     (their times are not speed figures); the winner has the best mean validation top-1 of the two models
  #  2. the winner's recipe on the full training split, seeds FINAL_SEEDS, one run at a time (training times are
  #     speed figures), then the time-to-accuracy table of those runs
  #  3. while DEADLINE allows: training images/s, eager and CUDA graphs (reduce-overhead), batch 128 and 1024
  # TUNE_FLAGS/FINAL_FLAGS (with DEVICE=cpu and a few images): a dry run here. CHOSEN="FLAGS" skips the tuning and
  # trains the seeds with those flags over the preset (CHOSEN="": the preset as it is, which the tuning of
  # 2026-11-30 chose; docs/RESULTS.md).
  start=$(date +%s)
  deadline=${DEADLINE:-540}
  left() { echo $(( deadline - ($(date +%s) - start) )); }
  ( sleep "$deadline"; echo "deadline: archiving what exists" | tee -a "$log"; archive fast-tune tune
    archive fast-gpu ) &
  watchdog=$!
  common=(--preset fast --epochs "${FAST_EPOCHS:-40}" --device "$dev" --no-dynamics)
  if [ -n "${CHOSEN+set}" ]; then
    read -ra chosen <<< "$CHOSEN"
    echo "## tuning skipped: the seeds train with --preset fast ${chosen[*]}" | tee -a "$log"
  else
    read -ra candidates <<< "${TUNE_CANDIDATES:-lr0.2 base lr0.8}"
    echo "## tuning: ${candidates[*]} ($(date -u +%H:%M:%S))" | tee -a "$log"
    pids=()
    for c in "${candidates[@]}"; do
      read -ra flags <<< "$($py benchmarks/fast_recipe.py --flags-of "$c")"
      # shellcheck disable=SC2086  # TUNE_FLAGS: several flags
      $py -m cnnbench compare "${common[@]}" "${flags[@]}" --seeds 0 --val-split 5000 --launcher local --workers 2 \
        --threads 2 --out "$work/tune/$c" ${TUNE_FLAGS:-} > "$work/tune-$c.log" 2>&1 &
      pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || echo "a tuning study failed" | tee -a "$log"; done
    for c in "${candidates[@]}"; do tail -n 12 "$work/tune-$c.log" >> "$log"; done
    archive fast-tune tune
    step "choice on validation" $py benchmarks/fast_recipe.py "${candidates[@]/#/$work/tune/}" \
      --flags-out "$work/chosen.flags"
    read -ra chosen <<< "$(cat "$work/chosen.flags" 2>/dev/null)"
    echo "tuning done at $(( $(date +%s) - start )) s" | tee -a "$log"
  fi
  # shellcheck disable=SC2086  # FINAL_FLAGS: several flags
  step "fast preset, chosen recipe, seeds ${FINAL_SEEDS:-1,2,3}" $py -m cnnbench compare "${common[@]}" "${chosen[@]}" \
    --seeds "${FINAL_SEEDS:-1,2,3}" --out "$work/fast-gpu" ${FINAL_FLAGS:-}
  archive fast-gpu
  step "time to accuracy table" $py benchmarks/time_to_accuracy.py --study "$work/fast-gpu" \
    --targets cifar10:vgg16_bn=0.93,cifar10:resnet18=0.94
  echo "final seeds done at $(( $(date +%s) - start )) s" | tee -a "$log"
  kill $watchdog 2>/dev/null || true
  for spec in "eager 128" "reduce-overhead 128" "eager 1024" "reduce-overhead 1024"; do
    read -r compile batch <<< "$spec"
    [ "$(left)" -gt 60 ] || { echo "no time left for: profile $spec" | tee -a "$log"; continue; }
    flags=(); [ "$compile" != eager ] && flags=(--compile --compile-mode "$compile")
    step "profile $compile, batch $batch" timeout "$(( $(left) - 10 ))" $py -m cnnbench profile --models vgg16_bn,resnet18 \
      --batch-size "$batch" --train --device "$dev" --repeats 20 "${flags[@]}" --out "$out/profile-$compile-$batch.json"
  done
  echo "done $(date -u +%H:%M:%S), $(( $(date +%s) - start )) s" | tee -a "$log"
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
archive modern-gpu
echo "done $(date -u +%H:%M:%S)" | tee -a "$log"
