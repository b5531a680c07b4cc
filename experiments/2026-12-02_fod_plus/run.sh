#!/usr/bin/env bash
# Issue "FOD that keeps what it learns": the study. Run alone (2 cores); everything goes to $OUT.
#  A. why detection declines: 128 px, 8 epochs, validation (from_train: held-out normals + synthetic defects) every
#     epoch with every branch of every stage measured (model.branch_analysis=true), seeds 3407, 1, 2.
#  B. the levers, chosen on that validation only (objective val/image_auroc), at 128 px and the default 2 epochs,
#     seeds 3407, 1, 2: the memory of normal patches mixed into each stage's score (model.net.memory_weight 0 / 0.5 /
#     0.75 / 1; 0 is the authors' score, 1 the memory alone), times how the stages' maps combine (the authors' mean, or
#     the scale-free geometric mean that phase A suggests); and the reconstruction branch's score alone.
#  C. the winner as experiment=fod_plus at the default settings (256 px, 2 epochs), seeds 3407, 1, 2: the test split
#     read once, beside default FOD, PatchCore and PaDiM of experiments/2026-12-02_fod_vs_baselines.
#  D. a variant of the benchmark (the generator's seed 1: other crops of the photos, other defects, other masks) at
#     the default settings: experiment=compare (faithful FOD, PatchCore, PaDiM) and experiment=fod_plus, seeds 3407, 1, 2.
#  E. more levers on top of fod_plus, chosen on validation as in B (128 px, 2 epochs): the learning rate, the weights
#     of the entropy and discrepancy losses (model.lambda1, model.lambda2), augmentations of the normal images.
#  F. (2026-12-03) the backbone levels on top of fod_plus, chosen on validation as in B: the authors' strides 8/16,
#     8/16/32, 16/32 and 4/8 (one transformer per level, the width doubling with the stride up to 512).
#  G. (2026-12-03) other photos (data.photos: moon, immunohistochemistry, hubble_deep_field), never tuned on, at the
#     defaults: experiment=compare and experiment=fod_plus, seeds 3407, 1, 2.
#  H. (2026-12-03) the original benchmark again with experiment=compare, after the default stopped holding out
#     calibration images below model.calibration.min_images (faithful FOD, PatchCore and PaDiM now train on all 40);
#     fod_plus (from_train validation, its calibration images are the validation normals) is unchanged by it.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/fod_plus}
RUN=(.venv/bin/python -m fod_lightning.run)
QUIET=(trainer.enable_progress_bar=false '~callbacks.progress_bar' keep_checkpoints=none)
SMALL=(data.image_size=128 data.val_protocol=from_train)
PHASES=${PHASES:-A B C}
if [[ " $PHASES " == *" A "* ]]; then
  "${RUN[@]}" -m "${QUIET[@]}" "${SMALL[@]}" '~callbacks.test_pictures' trainer.max_epochs=8 \
    trainer.check_val_every_n_epoch=1 model.branch_analysis=true seed=3407,1,2 hydra.sweep.dir="$OUT/A_branches"
fi
if [[ " $PHASES " == *" B "* ]]; then
  "${RUN[@]}" -m "${QUIET[@]}" "${SMALL[@]}" '~callbacks.test_pictures' optimized_metric=val/image_auroc \
    model.net.stage_mix=mean,geometric model.net.memory_weight=0,0.5,0.75,1.0 seed=3407,1,2 \
    hydra.sweep.dir="$OUT/B_levers"
  "${RUN[@]}" -m "${QUIET[@]}" "${SMALL[@]}" '~callbacks.test_pictures' optimized_metric=val/image_auroc \
    model.net.score=rec seed=3407,1,2 hydra.sweep.dir="$OUT/B_rec"
fi
if [[ " $PHASES " == *" C "* ]]; then
  "${RUN[@]}" -m "${QUIET[@]}" experiment=fod_plus seed=3407,1,2 hydra.sweep.dir="$OUT/C_fod_plus"
fi
if [[ " $PHASES " == *" D "* ]]; then
  "${RUN[@]}" -m "${QUIET[@]}" '~callbacks.test_pictures' experiment=compare data.seed=1 hydra.sweep.dir="$OUT/D_compare"
  "${RUN[@]}" -m "${QUIET[@]}" '~callbacks.test_pictures' experiment=fod_plus data.seed=1 seed=3407,1,2 \
    hydra.sweep.dir="$OUT/D_fod_plus"
fi
if [[ " $PHASES " == *" E "* ]]; then
  LEVER=("${RUN[@]}" -m "${QUIET[@]}" "${SMALL[@]}" '~callbacks.test_pictures' experiment=fod_plus
    optimized_metric=val/image_auroc seed=3407,1,2)
  "${LEVER[@]}" model.optimizer.lr=3e-5,1e-4,3e-4 hydra.sweep.dir="$OUT/E_lr"
  "${LEVER[@]}" model.lambda1=0.1,2.0 hydra.sweep.dir="$OUT/E_lambda1"
  "${LEVER[@]}" model.lambda2=0.1,2.0 hydra.sweep.dir="$OUT/E_lambda2"
  "${LEVER[@]}" data.augment=true hydra.sweep.dir="$OUT/E_augment"
fi
if [[ " $PHASES " == *" F "* ]]; then
  LEVEL=("${RUN[@]}" -m "${QUIET[@]}" "${SMALL[@]}" '~callbacks.test_pictures' experiment=fod_plus
    optimized_metric=val/image_auroc seed=3407,1,2)
  "${LEVEL[@]}" hydra.sweep.dir="$OUT/F_levels_8_16"
  "${LEVEL[@]}" 'model.net.backbone.strides=[8,16,32]' 'model.net.d_models=[256,512,512]' \
    hydra.sweep.dir="$OUT/F_levels_8_16_32"
  "${LEVEL[@]}" 'model.net.backbone.strides=[16,32]' 'model.net.d_models=[512,512]' hydra.sweep.dir="$OUT/F_levels_16_32"
  "${LEVEL[@]}" 'model.net.backbone.strides=[4,8]' 'model.net.d_models=[128,256]' hydra.sweep.dir="$OUT/F_levels_4_8"
fi
PHOTOS='data.photos=[moon,immunohistochemistry,hubble_deep_field]'
if [[ " $PHASES " == *" G "* ]]; then
  "${RUN[@]}" -m "${QUIET[@]}" '~callbacks.test_pictures' experiment=compare "$PHOTOS" hydra.sweep.dir="$OUT/G_compare"
  "${RUN[@]}" -m "${QUIET[@]}" '~callbacks.test_pictures' experiment=fod_plus "$PHOTOS" seed=3407,1,2 \
    hydra.sweep.dir="$OUT/G_fod_plus"
fi
if [[ " $PHASES " == *" H "* ]]; then
  "${RUN[@]}" -m "${QUIET[@]}" '~callbacks.test_pictures' experiment=compare hydra.sweep.dir="$OUT/H_compare"
fi
