"""Phases E and F: the validation objective per setting (mean ± std over seeds) and, paired by seed, its difference
from the reference setting (fod_plus itself). Reads the jobs' results.json (the objective each job returned to the
sweeper). A setting is named by its lever overrides ("fod_plus" when a job has none).

    .venv/bin/python experiments/2026-12-02_fod_plus/paired_levers.py model.optimizer.lr=0.0001 /tmp/fod_plus/E_*
    .venv/bin/python experiments/2026-12-02_fod_plus/paired_levers.py fod_plus /tmp/fod_plus/F_*
"""

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

LEVERS = ("model.optimizer.lr", "model.lambda1", "model.lambda2", "data.augment", "model.net.backbone.strides",
          "model.net.d_models", "trainer.max_epochs", "early_stopping_patience")


def objectives(sweeps: list[Path]) -> dict[str, dict[str, float]]:
    """setting (the lever's override) -> seed -> the job's objective."""
    found: dict[str, dict[str, float]] = defaultdict(dict)
    for results_file in sorted(f for sweep in sweeps for f in sweep.glob("*/results.json")):
        run = json.loads(results_file.read_text())["run"]
        seed = next(o for o in run["overrides"] if o.startswith("seed="))
        setting = ", ".join(o for o in run["overrides"] if o.split("=")[0] in LEVERS) or "fod_plus"
        found[setting][seed] = run["objective"]["value"]
    return found


def spread(values: list[float], sign: str = "") -> str:
    return f"{statistics.fmean(values):{sign}.4f} ± {statistics.stdev(values):.4f}"


def main(reference: str, sweeps: list[Path]) -> None:
    found = objectives(sweeps)
    print("| setting | seeds | validation objective | paired difference from the reference |\n|---|---|---|---|")
    for setting, per_seed in found.items():
        differences = [per_seed[seed] - found[reference][seed] for seed in per_seed]
        paired = "reference" if setting == reference else spread(differences, "+")
        print(f"| {setting} | {len(per_seed)} | {spread(list(per_seed.values()))} | {paired} |")


if __name__ == "__main__":
    main(sys.argv[1], [Path(p) for p in sys.argv[2:]])
