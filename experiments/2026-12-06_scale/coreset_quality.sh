#!/usr/bin/env bash
# The fast coreset's quality (issue 25): PatchCore with the exact greedy and with the fast one, on the embedded textures
# and on the photos, 3 seeds, 128 px, data.val_protocol=from_train. The two choose the same patches (tested), so every
# metric must be equal. Run alone (2 CPU cores), from the repository root:
#   bash experiments/2026-12-06_scale/coreset_quality.sh OUT
set -euo pipefail
OUT=${1:-outputs/coreset_quality}
PY=".venv/bin/python"
COMMON="model=patchcore data.image_size=128 data.val_protocol=from_train trainer.enable_progress_bar=false
  ~callbacks.progress_bar ~callbacks.test_pictures model.net.coreset_method=exact,fast seed=3407,1,2"
mkdir -p $OUT
$PY -m fod_lightning.run -m $COMMON hydra.sweep.dir=$OUT/textures > $OUT/textures.log 2>&1
$PY -m fod_lightning.run -m $COMMON hydra.sweep.dir=$OUT/photos "data.photos=[moon,immunohistochemistry,hubble_deep_field]" \
  > $OUT/photos.log 2>&1
$PY - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print("| benchmark | seed | coreset | image AUROC | pixel AUROC | AUPRO | fit s (mean per category) |\n|---|---|---|---|---|---|---|")
worst = 0.0
for bench in ("textures", "photos"):
    runs = {}
    for path in sorted((out / bench).glob("*/results.json")):
        r = json.loads(path.read_text())
        cfg = r["run"]["config"]
        key = (cfg["seed"], cfg["model"]["net"]["coreset_method"])
        runs[key] = r
        fit = sum(c["fit_seconds"] for c in r["categories"].values()) / len(r["categories"])
        m = r["mean"]
        print(f"| {bench} | {key[0]} | {key[1]} | {m['image_auroc']:.4f} | {m['pixel_auroc']:.4f} | {m['pixel_aupro']:.4f} | {fit:.1f} |")
    for seed in {s for s, _ in runs}:
        a, b = runs[(seed, "exact")], runs[(seed, "fast")]
        for cat in a["categories"]:
            for metric in ("image_auroc", "pixel_auroc", "pixel_aupro"):
                worst = max(worst, abs(a["categories"][cat][metric] - b["categories"][cat][metric]))
print(f"\nlargest |fast - exact| over every category, seed and metric: {worst:.3g}")
PY
