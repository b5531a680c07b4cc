#!/usr/bin/env bash
# The embedded benchmark at 128 px (2 epochs, the rest default), with and without the authors' torch-1.13
# optimizer dynamics, two seeds each: one local multirun of 4 jobs and its summary. From the repository root.
set -euo pipefail
OMP_NUM_THREADS=1 python -m fod_lightning.run -m hydra.sweep.dir=${1:-outputs/legacy_zero_grad} data.image_size=128 \
  seed=3407,1 model.legacy_zero_grad=false,true trainer.enable_progress_bar=false '~callbacks.progress_bar'
