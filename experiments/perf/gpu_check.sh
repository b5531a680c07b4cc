#!/usr/bin/env bash
# Every GPU measurement of experiments/perf in one call, on a machine with Python 3.12, torch and lightning
# but without Hydra/OmegaConf/albumentations/Lite0 weights (they travel as wheels in .whl/, made here by
# ../shared/tools/gpu-wheels .whl). From the repository root:  OUT=/some/dir bash experiments/perf/gpu_check.sh
# Writes under $OUT: gpu.txt (machine), tests.txt, determinism.txt, bench_gpu.{txt,json}, profile_gpu.txt, run_<precision>.txt and
# results_<precision>.json (the embedded benchmark, 4 epochs, batch 1, on the GPU in fp32 and bf16-mixed).
# baselines: PatchCore on an MVTec-sized category (400 training crops, 256 px) on the GPU: fit time and CUDA peak
# (results_patchcore_400.json, cost section), the coreset selected on the GPU.
# scale: python -m fod_lightning.bench scale on the GPU (an MVTec-sized category, every phase of FOD, fod_plus, PatchCore
# and PaDiM with its time and CUDA peak; anomalib is not on the GPU machine): scale_gpu.{txt,json}.
# STEPS chooses steps (default: all, about 13 minutes): e.g. STEPS="tests determinism" for the checks alone.
set -uo pipefail
STEPS=${STEPS:-tests determinism bench scale runs baselines}
step() { [[ " $STEPS " == *" $1 "* ]]; }
OUT=${OUT:-/tmp/fod_gpu_out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 WANDB_MODE=offline FOD_ROOT=/tmp/fod XDG_CACHE_HOME=/tmp/fod/cache
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, lightning, timm; print('torch', torch.__version__, 'lightning', lightning.__version__, 'timm', timm.__version__)"
  date -u; } | tee "$OUT/gpu.txt"
step tests && echo "== fused correlation on the GPU, eager and compiled, against the float64 formulas" &&
timeout 70 python3 -m pytest -q -p no:cacheprovider tests/unit/models/test_correlation.py -k gpu 2>&1 | tail -2 | tee "$OUT/tests.txt"
step determinism && echo "== trainer=gpu trainer.deterministic=true: two runs agree (eager and compiled kernels)" &&
timeout 240 python3 -m pytest -q -p no:cacheprovider tests/integration/test_faults.py -k gpu 2>&1 | tail -2 | tee "$OUT/determinism.txt"
step bench && echo "== benchmark" &&
timeout 170 python3 -m fod_lightning.bench --device cuda --data-root /tmp/fod/cache/fod_lightning/data/fod_textures \
  --train-batches 8,32 --eval-batch 32 --repeats 10 --baseline-repeats 3 --warmup 3 --compile --bf16 \
  --profile "$OUT/profile_gpu.txt" --out "$OUT/bench_gpu.json" 2>&1 | grep -v Warning | tee "$OUT/bench_gpu.txt"
step scale && echo "== scale: an MVTec-sized category (240 training, 100 test images, 256 px), every phase" &&
timeout 240 python3 -m fod_lightning.bench scale --device cuda --data-root /tmp/fod/scale \
  --out "$OUT/scale_gpu.json" 2>&1 | grep -v Warning | tee "$OUT/scale_gpu.txt"
step runs && echo "== embedded benchmark, 256 px, 4 epochs, batch 1, on the GPU: fp32 and bf16-mixed"
step runs && for precision in 32-true bf16-mixed; do
  timeout 90 python3 -m fod_lightning.run trainer=gpu trainer.precision=$precision data.batch_size=1 \
    trainer.max_epochs=4 trainer.check_val_every_n_epoch=2 \
    hydra.run.dir=/tmp/run_$precision overwrite=true '~callbacks.test_pictures' '~callbacks.progress_bar' \
    trainer.enable_progress_bar=false > "$OUT/run_$precision.txt" 2>&1
  tail -14 "$OUT/run_$precision.txt"
  cp /tmp/run_$precision/results.json "$OUT/results_$precision.json"
done
step baselines && echo "== PatchCore, 400 training crops of 256 px (an MVTec-sized memory bank), on the GPU" &&
timeout 240 python3 -m fod_lightning.run trainer=gpu model=patchcore data.category=brick data.n_train=400 \
  data.root=/tmp/fod/tex400 hydra.run.dir=/tmp/run_patchcore overwrite=true '~callbacks.test_pictures' \
  '~callbacks.progress_bar' trainer.enable_progress_bar=false > "$OUT/run_patchcore_400.txt" 2>&1 &&
cp /tmp/run_patchcore/results.json "$OUT/results_patchcore_400.json" && tail -8 "$OUT/run_patchcore_400.txt"
