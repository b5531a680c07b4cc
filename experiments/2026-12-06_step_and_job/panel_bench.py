"""Old panel (fresh figure, tight layout, tight bbox) vs PanelFigure, interleaved; 256 px embedded image."""
import sys, time, statistics, numpy as np
from pathlib import Path
sys.path.insert(0, sys.argv[1])  # holds plots_old.py: git show 8b0a4b0:src/fod_lightning/reporting/plots.py
import plots_old
from fod_lightning.reporting import plots
from fod_lightning.data.transforms import read_image
root = Path(sys.argv[2]) / "brick" / "test"  # the embedded benchmark
files = sorted(root.rglob("*.png"))[:12]
imgs = [read_image(f) for f in files]
rng = np.random.default_rng(0)
mask = np.zeros(imgs[0].shape[:2], np.uint8); mask[100:140, 90:160] = 1
amap = rng.random(imgs[0].shape[:2]).astype(np.float32)
out = Path("/tmp/panels_bench"); out.mkdir(exist_ok=True)
title = "#12 brick / scratch / 003.png: score 0.1234, false negative\npixel threshold 0.0123 (calibrated on 40 normal training images, quantile 0.999)"
old, new = [], []
with plots.PanelFigure((0.0, 1.0)) as panels:
    panels.draw(imgs[0], mask, amap, 0.7, title, out / "warm.png")
    for r in range(3):
        for i, im in enumerate(imgs):
            t = time.perf_counter(); plots_old.panel(im, mask, amap, 0.7, (0.0, 1.0), title, out / f"old{i}.png"); old.append(time.perf_counter() - t)
            t = time.perf_counter(); panels.draw(im, mask, amap, 0.7, title, out / f"new{i}.png"); new.append(time.perf_counter() - t)
size = lambda p: sum((out / f"{p}{i}.png").stat().st_size for i in range(len(imgs))) / len(imgs) / 1024
print(f"old panel {statistics.median(old):.3f} s, PanelFigure {statistics.median(new):.3f} s, ratio {statistics.median(old)/statistics.median(new):.2f}x; "
      f"file {size('old'):.0f} KiB vs {size('new'):.0f} KiB")
