#!/usr/bin/env bash
# PatchCore again on the own photos once the coreset was the fast exact one (issue 25): bash patchcore_fast.sh OUT
set -euo pipefail
OUT=${1:-outputs/own_images}  # the folder run.sh wrote (its photos/)
DATA=$OUT/photos
export PYTHONPATH=$PWD/src
FOLDER="data=folder data.root=$DATA data.category=coffee data.normal_dir=good data.normal_test_dir=test_good
  data.abnormal_dirs=[defects/scratch,defects/stain] data.mask_dir=masks data.mask_suffix=_mask data.num_workers=0
  trainer.max_epochs=2 callbacks.test_pictures.max_panels=4 trainer.enable_progress_bar=false ~callbacks.progress_bar"
/usr/bin/time -f "patchcore_fast: %e s wall, %M KiB peak" .venv/bin/python -m fod_lightning.run $FOLDER model=patchcore \
  hydra.run.dir=$OUT/runs_fast/patchcore > $OUT/patchcore_fast.log 2>&1
tail -1 $OUT/patchcore_fast.log
