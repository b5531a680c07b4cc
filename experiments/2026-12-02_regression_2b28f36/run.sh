#!/usr/bin/env bash
# Issue "FOD that keeps what it learns", item 0: the code of 2b28f36 against today's on the embedded benchmark at
# 2b28f36's defaults (128 px, 8 epochs, validation every 4), five seeds; today's code also with every normal
# training image trained on (data.calibration_fraction=0, as 2b28f36, which held none out for thresholds).
# Run alone (2 cores); the runs go to $OUT, the table to compare.md here.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/regression_2b28f36}
OLD=/tmp/fod_2b28f36
rm -rf "$OLD" && mkdir -p "$OLD" && git archive 2b28f36 | tar -x -C "$OLD"
COMMON=(trainer.enable_progress_bar=false '~callbacks.test_pictures' '~callbacks.progress_bar')
NEW=(data.image_size=128 trainer.max_epochs=8 trainer.check_val_every_n_epoch=4 keep_checkpoints=last)
for seed in 3407 1 2 3 4; do  # the two commits first
  PYTHONPATH="$OLD/src" .venv/bin/python -m fod_lightning.run seed=$seed "${COMMON[@]}" \
    hydra.run.dir="$OUT/2b28f36/$seed"
  .venv/bin/python -m fod_lightning.run seed=$seed "${COMMON[@]}" "${NEW[@]}" hydra.run.dir="$OUT/main/$seed"
done
for seed in ${ALL_IMAGES_SEEDS:-3407 1 2 3 4}; do  # then today's code on every training image, as 2b28f36
  .venv/bin/python -m fod_lightning.run seed=$seed "${COMMON[@]}" "${NEW[@]}" data.calibration_fraction=0 \
    hydra.run.dir="$OUT/main_all_images/$seed"
done
.venv/bin/python experiments/2026-12-02_regression_2b28f36/compare.py "$OUT" > experiments/2026-12-02_regression_2b28f36/compare.md
