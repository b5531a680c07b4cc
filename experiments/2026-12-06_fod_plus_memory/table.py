"""Markdown table of memory_bound.py's records: python table.py memory_bound_*.json"""

import json
import sys

METRICS = ("image_auroc", "pixel_auroc", "pixel_aupro", "pixel_ap", "pixel_f1_max")

print("| category | max patches | patches per stage | memory | coreset | validation s / image | "
      + " | ".join(METRICS) + " |")
print("|---" * (6 + len(METRICS)) + "|")
for path in sys.argv[1:]:
    record = json.load(open(path))
    rows = record["rows"]
    whole = rows[0]
    for row in rows:
        cells = []
        for m in METRICS:
            value, delta = row[f"val/{m}"], row[f"val/{m}"] - whole[f"val/{m}"]
            cells.append(f"{value:.4f}" + (f" ({delta:+.4f})" if row is not whole else ""))
        bound = "all" if row["max_patches"] is None else f"{row['max_patches']:,}"
        print(f"| {record['category']} | {bound} | {' / '.join(f'{n:,}' for n in row['patches'])} | "
              f"{row['bank_mib']:.1f} MiB | {row['coreset_s']:.1f} s | {row['validation_s_per_image']:.3f} | "
              + " | ".join(cells) + " |")
