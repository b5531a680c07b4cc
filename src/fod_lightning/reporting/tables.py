"""Per-setting statistics over seeds, and their Markdown and CSV tables.

Mean and sample standard deviation (ddof=1; blank with one seed) over seeds, per category. The ``mean`` row
is the mean over categories of the category means; its standard deviation is that of the per-seed means over
categories, given only when every category has every seed (otherwise the seeds are not comparable).
Per defect type (``defects`` of each category in results.json) the same mean and standard deviation over seeds.
"""

import csv
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from fod_lightning.reporting.jobs import COSTS, Job, Row, Setting, setting_key
from fod_lightning.reporting.results import DEFECT_METRICS, METRICS, READINGS
from fod_lightning.utils.atomic import atomic_path, write_text_atomic


@dataclass
class Stat:
    mean: float
    std: float | None
    n: int

    def cell(self) -> str:
        return f"{self.mean:.4f}" if self.std is None else f"{self.mean:.4f} ± {self.std:.4f}"


def stat(values: list[float]) -> Stat:
    return Stat(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None, len(values))


def setting_table(rows: list[Row], reading: str) -> dict[str, dict[str, Stat]]:
    """category (then ``mean``) -> metric -> Stat, for the rows of one setting."""
    categories = list(dict.fromkeys(r.category for r in rows))
    seeds = list(dict.fromkeys(r.seed for r in rows))
    values = {(r.category, r.seed): getattr(r, reading) for r in rows}
    table = {}
    for category in categories:
        # null in results.json: not available (e.g. AUROC without anomalous test images)
        per_metric = {m: [v[m] for (c, _), v in values.items() if c == category and v.get(m) is not None]
                      for m in METRICS}  # fmt: skip
        table[category] = {m: stat(vs) for m, vs in per_metric.items() if vs and not any(map(math.isnan, vs))}
    metrics = [m for m in METRICS if categories and all(m in table[c] for c in categories)]
    balanced = all((c, s) in values for c in categories for s in seeds)
    mean_row = {}
    for m in metrics:
        mean = statistics.fmean(table[c][m].mean for c in categories)
        per_seed = [statistics.fmean(values[(c, s)][m] for c in categories) for s in seeds] if balanced else []
        std = statistics.stdev(per_seed) if len(per_seed) > 1 else None
        mean_row[m] = Stat(mean, std, len(seeds) if balanced else min(table[c][m].n for c in categories))
    table["mean"] = mean_row
    return table


COST_LABELS = {"fit_seconds": "fit (s)", "score_seconds_per_image": "scoring (s/image)",
               "fit_peak_rss_mib": "fit peak RSS (MiB)", "fit_peak_cuda_mib": "fit peak CUDA (MiB)"}  # fmt: skip


def cost_stats(rows: list[Row]) -> dict[str, Stat]:
    """Per cost (:data:`COSTS`): mean and std over the setting's categories and seeds (one job each)."""
    return {c: stat(values) for c in COSTS if (values := [r.cost[c] for r in rows if c in r.cost])}


def cost_cell(s: Stat | None) -> str:
    if s is None:
        return "-"
    return f"{s.mean:.4g}" if s.std is None else f"{s.mean:.4g} ± {s.std:.2g}"


def markdown_table(table: dict[str, dict[str, Stat]]) -> str:
    lines = ["| category | seeds | " + " | ".join(METRICS) + " |", "|" + "---|" * (len(METRICS) + 2)]
    for name, stats in table.items():
        n = max((s.n for s in stats.values()), default=0)
        cells = [stats[m].cell() if m in stats else "-" for m in METRICS]
        lines.append(f"| {'**mean**' if name == 'mean' else name} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def defect_tables(jobs: list[Job]) -> dict[str, dict[tuple[str, str], dict[str, Stat]]]:
    """setting key -> (category, defect type) -> ``num_images`` and :data:`DEFECT_METRICS` -> Stat over seeds
    (a category and seed counted once per setting, as in the main tables)."""
    values: dict[str, dict[tuple[str, str], dict[str, list[float]]]] = {}
    seen = set()
    for job in jobs:
        key = setting_key(job.results) if job.results is not None else None
        for category, result in (job.results or {}).get("categories", {}).items():
            if (key, category, job.run.get("seed")) in seen:
                continue
            seen.add((key, category, job.run.get("seed")))
            for defect, numbers in (result.get("defects") or {}).items():
                cell = values.setdefault(key, {}).setdefault((category, defect), {})
                for m in ("num_images", *DEFECT_METRICS):
                    if numbers.get(m) is not None and not math.isnan(numbers[m]):
                        cell.setdefault(m, []).append(numbers[m])
    return {key: {where: {m: stat(v) for m, v in cell.items()} for where, cell in per.items()}
            for key, per in values.items()}  # fmt: skip


def defect_markdown(table: dict[tuple[str, str], dict[str, Stat]]) -> str:
    lines = ["| category | defect type | images | seeds | " + " | ".join(DEFECT_METRICS) + " |",
             "|" + "---|" * (len(DEFECT_METRICS) + 4)]  # fmt: skip
    for (category, defect), stats in table.items():
        images = f"{stats['num_images'].mean:g}" if "num_images" in stats else "?"
        cells = [stats[m].cell() if m in stats else "-" for m in DEFECT_METRICS]
        n = max((s.n for s in stats.values()), default=0)
        lines.append(f"| {category} | {defect} | {images} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparison_table(tables: dict[str, dict[str, dict[str, Stat]]], settings: dict[str, Setting],
                     costs: dict[str, dict[str, Stat]]) -> str:  # fmt: skip
    """One row per setting: the sweeper's objective (mean over jobs, where one was optimised), the mean row of its
    test reading, and what a category cost (mean over its jobs)."""
    shown = [c for c in COSTS if any(c in per for per in costs.values())]
    objectives = sorted({name for s in settings.values() for name in s.objective})
    lines = ["| setting | model | protocol | test_ckpt | categories | seeds | "
             + "".join(f"objective {o} | " for o in objectives) + " | ".join(METRICS) + " | "
             + " | ".join(COST_LABELS[c] for c in shown) + " |",
             "|" + "---|" * (len(objectives) + len(METRICS) + len(shown) + 6)]  # fmt: skip
    for key, per_reading in tables.items():
        test, header = per_reading["test"], settings[key].header
        mean = test.get("mean", {})
        seeds = max((s.n for s in mean.values()), default=0)
        cells = [stat(settings[key].objective[o]).cell() if o in settings[key].objective else "-" for o in objectives]
        cells += [mean[m].cell() if m in mean else "-" for m in METRICS]
        cells += [cost_cell(costs.get(key, {}).get(c)) for c in shown]
        lines.append(
            f"| {settings[key].label} | {header.get('model') or '-'} | {header.get('protocol')} | "
            f"{header.get('test_ckpt') or 'last'} | {len(test) - 1} | {seeds} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def jobs_table(jobs: list[Job], folder: Path) -> str:
    """Failed and unfinished jobs; empty when every job finished."""
    lines = [f"| {j.folder.relative_to(folder)} | {j.status} | {_seed(j)} | {j.detail.replace('|', '/')} |"
             for j in jobs if j.status != "done"]  # fmt: skip
    return "\n".join(["| job | status | seed | detail |", "|---|---|---|---|", *lines]) if lines else ""


def _seed(job: Job) -> str:
    return str(job.run.get("seed", "?"))


def thresholds_markdown(jobs: list[Job]) -> str:
    """Per job and category: the calibrated image and pixel thresholds, their rule and images; then what the first
    one promises (the same words for every job of a setting)."""
    lines = ["| category | seed | image | pixel | rule | images | held out |", "|---|---|---|---|---|---|---|"]
    said = ""
    for job in jobs:
        for category, result in job.results.get("categories", {}).items():
            t = result.get("thresholds") if isinstance(result, dict) else None
            if not t:
                continue
            rule = t.get("image_rule", t.get("source"))
            image, pixel = (f"{t[k]:.4g}" if isinstance(t.get(k), int | float) else "-" for k in ("image", "pixel"))
            lines.append(f"| {category} | {_seed(job)} | {image} | {pixel} | {rule} | {t.get('num_images', '-')} | "
                         f"{'yes' if t.get('held_out') else 'no'} |")  # fmt: skip
            said = said or t.get("statement", "")
    return "\n".join(lines) + (f"\n\n{said}" if said else "") if len(lines) > 2 else ""


def write_markdown(path: Path, title: str, tables: dict, settings: dict[str, Setting], jobs: list[Job],
                   notes: list[str], folder: Path, costs: dict[str, dict[str, Stat]]) -> str:  # fmt: skip
    done = sum(j.status == "done" for j in jobs)
    defects = defect_tables(jobs)
    parts = [f"# {title}\n", f"{done} of {len(jobs)} jobs finished; {len(settings)} setting(s).\n"]
    not_done = jobs_table(jobs, folder)
    if not_done:
        parts.append(f"## Jobs that did not finish\n\n{not_done}\n")
    parts += [f"- {n}" for n in notes] + ([""] if notes else [])
    if len(settings) > 1 or any(s.objective for s in settings.values()):  # one setting: for its objective
        compared = comparison_table(tables, settings, costs)
        heading = "Settings compared" if len(settings) > 1 else "The setting"
        parts.append(f"## {heading} (test reading, mean over categories)\n\n{compared}\n")
    for key, per_reading in tables.items():
        h = settings[key].header
        parts.append(f"## {settings[key].label}\n\n{h.get('model') or 'model ?'}, {h.get('setting') or 'separate'} "
                     f"setting, {h.get('benchmark')}, "
                     f"{h.get('backbone')}, validation protocol {h.get('protocol')}, test_ckpt "
                     f"{h.get('test_ckpt') or 'last'}\n")  # fmt: skip
        if costs.get(key):
            spent = ", ".join(f"{COST_LABELS[c]} {cost_cell(s)}" for c, s in costs[key].items())
            parts.append(f"cost per category (mean ± std over its jobs): {spent}\n")
        for reading, meaning in READINGS.items():
            parts.append(f"### {reading}: {meaning}\n\n{markdown_table(per_reading[reading])}\n")
        if defects.get(key):
            parts.append("### per defect type (test split): image AUROC of the normal test images vs each type's "
                         f"images, pixel AUPRO over their maps\n\n{defect_markdown(defects[key])}\n")  # fmt: skip
        if thresholds := thresholds_markdown([j for j in jobs if j.results and setting_key(j.results) == key]):
            parts.append(f"### decision thresholds of the tested models\n\n{thresholds}\n")
    text = "\n".join(parts)
    write_text_atomic(path, text)
    return text


def write_csv(path: Path, tables: dict, settings: dict[str, Setting], costs: dict[str, dict[str, Stat]]) -> None:
    """One row per setting, reading and category: mean, std and seed count of every metric; then per setting a row
    ``cost`` with the mean and std of each cost over its jobs."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["setting", "reading", "category", "seeds",
                         *(f"{m}_{s}" for m in (*METRICS, *COSTS) for s in ("mean", "std"))])  # fmt: skip
        for key, per_reading in tables.items():
            for reading, table in per_reading.items():
                for category, stats in table.items():
                    n = max((s.n for s in stats.values()), default=0)
                    writer.writerow([settings[key].label, reading, category, n, *_csv_cells(stats, METRICS)])
            if costs.get(key):
                n = max(s.n for s in costs[key].values())
                writer.writerow([settings[key].label, "cost", "all", n, *([""] * 2 * len(METRICS)),
                                 *_csv_cells(costs[key], COSTS)])  # fmt: skip


def _csv_cells(stats: dict[str, Stat], names: tuple[str, ...]) -> list[str]:
    cells = []
    for m in names:
        s = stats.get(m)
        cells += ["", ""] if s is None else [f"{s.mean:.6f}", "" if s.std is None else f"{s.std:.6f}"]
    return cells
