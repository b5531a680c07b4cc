"""Largest absolute difference between two behaviour.py records, per number (the refactoring must keep them to 1e-6).

    .venv/bin/python experiments/2026-12-06_house_refined/compare.py before.json after.json
"""

import json
import sys


def flat(record, prefix=""):
    if isinstance(record, dict):
        return {k: v for key, value in record.items() for k, v in flat(value, f"{prefix}{key}.").items()}
    if isinstance(record, list):
        return {k: v for i, value in enumerate(record) for k, v in flat(value, f"{prefix}{i}.").items()}
    return {prefix.rstrip("."): record}


if __name__ == "__main__":
    before, after = (flat(json.load(open(p))) for p in sys.argv[1:3])
    assert set(before) == set(after), sorted(set(before) ^ set(after))
    diffs = {k: abs(after[k] - before[k]) if isinstance(before[k], float) else float(after[k] != before[k])
             for k in before}
    worst = max(diffs, key=diffs.get)
    print(f"{len(diffs)} numbers; {sum(d == 0 for d in diffs.values())} identical; largest difference "
          f"{diffs[worst]:.3g} ({worst})")
    sys.exit(0 if diffs[worst] <= 1e-6 else 1)
