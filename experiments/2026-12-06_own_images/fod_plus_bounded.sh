#!/usr/bin/env bash
# fod_plus on the own-images photos with today's preset (memory bounded at 50,000 patches per stage); run alone:
#   REPO=$PWD bash experiments/2026-12-06_own_images/fod_plus_bounded.sh OUT
set -euo pipefail
cd "${REPO:-.}"  # the repository root (a frozen worktree of cbb0ce8 when this ran)
export PYTHONPATH=$PWD/src
OUT=${1:-/work/study/own}; DATA=$OUT/photos; PY=.venv/bin/python
[ -d "$DATA/good" ] || $PY experiments/2026-12-06_own_images/make_photos.py "$DATA"
FOLDER="data=folder data.root=$DATA data.category=coffee data.normal_dir=good data.normal_test_dir=test_good
  data.abnormal_dirs=[defects/scratch,defects/stain] data.mask_dir=masks data.mask_suffix=_mask data.num_workers=0
  trainer.max_epochs=2 callbacks.test_pictures.max_panels=4 trainer.enable_progress_bar=false ~callbacks.progress_bar"
/usr/bin/time -f "fod_plus: %e s wall, %M KiB peak" $PY -m fod_lightning.run $FOLDER hydra.run.dir=$OUT/runs/fod_plus experiment=fod_plus > $OUT/fod_plus.log 2>&1
tail -1 $OUT/fod_plus.log
