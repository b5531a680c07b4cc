#!/usr/bin/env bash
# MVTec AD 2's protocol on an AD2-like benchmark built from scikit-image's photos (make_data.py; the real one cannot be
# downloaded here): the four models with experiment=mvtec_ad2 (models selected and thresholds calibrated on
# validation/good only, AU-PRO to FPR 0.05, SegF1 at the calibrated pixel threshold, pixel metrics at each image's
# full 1.8-megapixel size, streamed), 256 px input, 2 epochs for the trained ones, and submission=true: the server's
# files of test_private and test_private_mixed, checked and packed. Run alone (2 CPU cores), from the repository root:
#   bash experiments/2026-12-06_mvtec_ad2/run.sh OUT
set -euo pipefail
OUT=${1:-outputs/mvtec_ad2_study}
PY=".venv/bin/python"
export PYTHONPATH=$PWD/src  # the code of this checkout, not the editable install's
DATA=$OUT/data
[ -d "$DATA/brick" ] || $PY experiments/2026-12-06_mvtec_ad2/make_data.py "$DATA"
COMMON="data.root=$DATA data.category=[brick,moon] data.num_workers=0 trainer.max_epochs=2 submission=true
  callbacks.test_pictures.max_panels=2 trainer.enable_progress_bar=false ~callbacks.progress_bar"
run() { local name=$1; shift; /usr/bin/time -f "$name: %e s wall, %M KiB peak" $PY -m fod_lightning.run $COMMON \
  hydra.run.dir=$OUT/runs/$name "$@" > $OUT/$name.log 2>&1; tail -1 $OUT/$name.log; }
mkdir -p $OUT
run fod experiment=mvtec_ad2
run fod_plus experiment=mvtec_ad2_fod_plus
run patchcore experiment=mvtec_ad2 model=patchcore
run padim experiment=mvtec_ad2 model=padim
$PY -m fod_lightning.summarize $OUT/runs > /dev/null
$PY experiments/2026-12-06_mvtec_ad2/table.py $OUT | tee $OUT/table.md
