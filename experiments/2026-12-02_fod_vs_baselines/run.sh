#!/usr/bin/env bash
# FOD, PatchCore and PaDiM on the embedded benchmark (brick, grass, gravel) at 256 px, seeds 3407, 1 and 2:
# experiment=compare with the default settings of each model (FOD: 2 epochs, the embedded benchmark's budget).
# Run alone on the machine (timings); writes the sweep to $OUT and copies its summary and results here.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/fod_vs_baselines}
HERE=experiments/2026-12-02_fod_vs_baselines
.venv/bin/python -m fod_lightning.run -m experiment=compare hydra.sweep.dir="$OUT" \
  '~callbacks.progress_bar' trainer.enable_progress_bar=false
cp "$OUT"/summary.md "$OUT"/summary.csv "$OUT"/summary.png "$HERE"/
for job in "$OUT"/*/; do
  cp "$job/results.json" "$HERE/results_job$(basename "$job").json"
done
