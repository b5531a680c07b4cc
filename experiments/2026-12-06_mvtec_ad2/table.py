"""The MVTec AD 2 study's table: per model and object, the test_public metrics at full resolution (AU-PRO to FPR 0.05,
SegF1 at the threshold calibrated on validation/good), the thresholds' rule, the fit time and peak memory, and the
submission each run wrote (files, archive size, checked).

    .venv/bin/python experiments/2026-12-06_mvtec_ad2/table.py OUT
"""

import json
import sys
from pathlib import Path

COLUMNS = ("image_auroc", "pixel_auroc", "pixel_aupro", "seg_f1", "pixel_f1_max", "pixel_ap")


def fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def main(out: Path) -> None:
    print("| model | object | " + " | ".join(COLUMNS) + " | AU-PRO limit | pixel threshold (rule) | fit s | "
          "peak RSS MiB | pixels scored |")  # fmt: skip
    print("|" + "---|" * (len(COLUMNS) + 7))
    notes = []
    for run in sorted((out / "runs").iterdir()):
        path = run / "results.json"
        if not path.is_file():
            continue
        results = json.loads(path.read_text())
        for name, c in results["categories"].items():
            t = c.get("thresholds") or {}
            rule = f"{t.get('pixel', float('nan')):.4g} ({t.get('pixel_quantile')} quantile of {t.get('num_images')} "
            rule += "validation/good images)"
            print(f"| {run.name} | {name} | " + " | ".join(fmt(c.get(k)) for k in COLUMNS) +
                  f" | {results.get('aupro_fpr_limit', c.get('aupro_fpr_limit'))} | {rule} | {c.get('fit_seconds')} | "
                  f"{(c.get('cost') or {}).get('fit_peak_rss_mib')} | "
                  f"{(c.get('pixel_metrics') or {}).get('pixels')} ({(c.get('pixel_metrics') or {}).get('mode')}) |")  # fmt: skip
        sub = results["run"].get("submission")
        if sub:
            archive = Path(sub["archive"])
            files = sum(1 for _ in Path(sub["folder"]).rglob("*.*"))
            notes.append(f"- {run.name}: {files} files in {sub['folder']}, {archive.name} "
                         f"{archive.stat().st_size / 2**20:.1f} MiB (checked before packing)")  # fmt: skip
    print("\nSubmissions:\n" + "\n".join(notes))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
