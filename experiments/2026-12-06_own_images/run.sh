#!/usr/bin/env bash
# The custom-data study of issue 28: a user's own 320x240 product photos in the folder layout, the four models at the
# defaults a user gets (data=folder: image_size=auto, val_protocol=from_train), 2 epochs for the trained ones; then
# FOD as it ran before the change (square 256 px, the test split as validation); then the threshold rules and PNG
# against JPEG. Run alone (2 CPU cores), from the repository root:
#   bash experiments/2026-12-06_own_images/run.sh /work/study/own
set -euo pipefail
OUT=${1:-outputs/own_images}
PY=".venv/bin/python"
export PYTHONPATH=$PWD/src  # the code of this checkout, not the editable install's
DATA=$OUT/photos
[ -d "$DATA/good" ] || $PY experiments/2026-12-06_own_images/make_photos.py "$DATA"
FOLDER="data=folder data.root=$DATA data.category=coffee data.normal_dir=good data.normal_test_dir=test_good
  data.abnormal_dirs=[defects/scratch,defects/stain] data.mask_dir=masks data.mask_suffix=_mask data.num_workers=0
  trainer.max_epochs=2 callbacks.test_pictures.max_panels=4 trainer.enable_progress_bar=false ~callbacks.progress_bar"
run() { local name=$1; shift; /usr/bin/time -f "$name: %e s wall, %M KiB peak" $PY -m fod_lightning.run $FOLDER \
  hydra.run.dir=$OUT/runs/$name "$@" > $OUT/$name.log 2>&1; tail -1 $OUT/$name.log; }
mkdir -p $OUT
run fod
run fod_plus experiment=fod_plus
run patchcore model=patchcore
run padim model=padim
run fod_before data.image_size=256 data.val_protocol=paper   # the defaults before issue 28
$PY -m fod_lightning.summarize $OUT/runs > /dev/null
$PY experiments/2026-12-06_own_images/thresholds_and_jpeg.py $OUT
