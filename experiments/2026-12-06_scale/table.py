"""The scale bench's record as a Markdown table: per model and phase, seconds, peak memory and what was measured.

    .venv/bin/python experiments/2026-12-06_scale/table.py experiments/2026-12-06_scale/scale_cpu.json
"""

import json
import sys
from pathlib import Path


def main(path: Path) -> None:
    record = json.loads(path.read_text())
    args = record["args"]
    print(f"`python -m fod_lightning.bench scale` ({record['date']}, {args['device']}): {args['train']} normal images "
          f"(a tenth held out to calibrate), {args['test']} test images, {args['size']} px; metrics also at "
          f"{args['original']} px\n")  # fmt: skip
    print("| model | phase | seconds | peak MiB | measured |\n|---|---|---|---|---|")
    for row in record["rows"]:
        note = row["note"]
        if "seconds_per_image" in row:
            note += f" ({row['seconds_per_image']:.3f} s / image)"
        if "extrapolated_seconds" in row:
            note = note if "for all" in note else note + f": {row['extrapolated_seconds']:.0f} s for all"
        if "binned_error" in row and "binned within" not in note:
            note += f"; binned within {row['binned_error']:.1e}"
        print(f"| {row['model']} | {row['phase']} | {row['seconds']:.2f} | {row['peak_mib']:.0f} | {note} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
