#!/usr/bin/env bash
# The unified setting (issue 26): one model for all categories against one per category, on the embedded textures and
# on the other photos, 3 seeds, 128 px, every selection on held-out validation (data.val_protocol=from_train).
#   A: FOD's replacement of the per-category reference, chosen on validation (textures, seed 3407): retrieved with 1 or
#      5 neighbours, clustered with 3 or 8 groups.
#   B: separate against unified for FOD (A's choice, conf/model_extras/setting/fod_unified.yaml), fod_plus, PatchCore
#      and PaDiM, on both benchmarks.
# Run alone (2 CPU cores), from the repository root, phase A first, then B once A's choice is the default of
# conf/model_extras/setting/fod_unified.yaml:  bash experiments/2026-12-06_unified/run.sh OUT A; ... run.sh OUT B
set -euo pipefail
OUT=${1:-outputs/unified_study}
PHASE=${2:-A}
PY=".venv/bin/python"
export PYTHONPATH=$PWD/src  # the code of this checkout, not the editable install's
COMMON="data.image_size=128 data.val_protocol=from_train trainer.enable_progress_bar=false ~callbacks.progress_bar
  callbacks.test_pictures.max_panels=2 keep_checkpoints=last"
PHOTOS="data.photos=[moon,immunohistochemistry,hubble_deep_field]"
sweep() { local name=$1; shift; $PY -m fod_lightning.run -m $COMMON hydra.sweep.dir=$OUT/$name "$@" \
  > $OUT/$name.log 2>&1; $PY -m fod_lightning.summarize $OUT/$name > /dev/null; echo "$name done"; }
mkdir -p $OUT
if [ "$PHASE" = A ]; then
sweep A_retrieved setting=unified seed=3407 model.net.reference_mode=retrieved model.net.reference_neighbours=1,5
sweep A_clustered setting=unified seed=3407 model.net.reference_mode=clustered model.net.reference_clusters=3,8
$PY experiments/2026-12-06_unified/choose_reference.py $OUT/A_retrieved $OUT/A_clustered | tee $OUT/A_choice.md
exit 0
fi
for bench in textures photos; do
  extra=""; [ $bench = photos ] && extra=$PHOTOS
  sweep B_${bench} setting=separate,unified model=fod,patchcore,padim seed=3407,1,2 $extra
  sweep B_${bench}_fod_plus experiment=fod_plus setting=separate,unified seed=3407,1,2 $extra
done
$PY experiments/2026-12-06_unified/compare.py $OUT | tee $OUT/compare.md
$PY experiments/2026-12-06_own_images/threshold_rules.py $OUT/B_textures $OUT/B_photos $OUT/B_textures_fod_plus \
  $OUT/B_photos_fod_plus  # issue 28's threshold rules on the separate jobs: $OUT/benchmarks.md
