"""One W&B summary run per run or sweep folder: the comparison and per-category tables and the figure.

Its id is derived from the folder, so writing it again (``summarize --wandb`` after the sweep's own summary)
updates the same run instead of adding one.
"""

import hashlib
from pathlib import Path

from fod_lightning.reporting.jobs import COSTS
from fod_lightning.reporting.results import METRICS
from fod_lightning.reporting.tables import Stat
from fod_lightning.reporting.wandb_logger import require_wandb, resolve_mode, staging_inside


def summary_run_id(folder: Path) -> str:
    return "summary-" + hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:16]


def wandb_settings(summary, project: str | None, entity: str | None, group: str | None) -> dict:
    """project, entity, group and mode: the arguments if given, else those the jobs logged with."""
    logged = {}
    for job in summary.jobs:
        logged = job.run.get("config", {}).get("logger", {}).get("wandb") or {}
        if logged:
            break
    return {
        "project": project or logged.get("project") or "fod_lightning",
        "entity": entity or logged.get("entity"),
        "group": group or logged.get("group") or summary.folder.name,
        "mode": resolve_mode(logged.get("mode", "auto")),
    }


def log_summary_run(summary, project: str | None = None, entity: str | None = None, group: str | None = None) -> Path:
    """Write the summary run of ``summary`` (a :class:`fod_lightning.reporting.Summary`); returns its folder."""
    require_wandb()
    import wandb

    where = wandb_settings(summary, project, entity, group)
    labels = {k: s.label for k, s in summary.settings.items()}
    run = wandb.init(
        id=summary_run_id(summary.folder), resume="allow", name="summary", job_type="summary",
        tags=["summary", *{str(s.header.get("benchmark")) for s in summary.settings.values()}],
        dir=str(summary.folder), config={
            "folder": str(summary.folder), "jobs": len(summary.jobs),
            "jobs_finished": sum(j.status == "done" for j in summary.jobs),
            "settings": {labels[k]: {**s.header, **s.overrides} for k, s in summary.settings.items()},
        }, **where,
    )  # fmt: skip
    try:
        columns = ["setting", "reading", "category", "seeds", *(f"{m}_{s}" for m in METRICS for s in ("mean", "std"))]
        per_category = wandb.Table(columns=columns)
        for key, per_reading in summary.tables.items():
            for reading, table in per_reading.items():
                for category, stats in table.items():
                    per_category.add_data(labels[key], reading, category, _seeds(stats), *_cells(stats))
        comparison = wandb.Table(columns=["setting", "model", *columns[3:], *(f"{c}_mean" for c in COSTS)])
        for key, per_reading in summary.tables.items():
            mean, costs = per_reading["test"].get("mean", {}), summary.costs.get(key, {})
            comparison.add_data(labels[key], summary.settings[key].header.get("model"), _seeds(mean), *_cells(mean),
                                *(costs[c].mean if c in costs else None for c in COSTS))  # fmt: skip
        logged = {"summary/settings": comparison, "summary/per_category": per_category}
        if summary.figure is not None:  # None: no job finished, nothing to draw
            logged["summary/figure"] = wandb.Image(str(summary.figure))
        with staging_inside(run):
            run.log(logged)
        for metric in METRICS:
            means = {labels[k]: t["test"]["mean"][metric].mean for k, t in summary.tables.items()
                     if metric in t["test"].get("mean", {})}  # fmt: skip
            if means:
                best = max(means, key=means.get)
                run.summary[f"best_setting/{metric}"] = best
                run.summary[f"best_mean/{metric}"] = means[best]
        return Path(run.dir).parent
    finally:
        run.finish()
        wandb.teardown()  # waits until every run of this process is written out (offline files complete)


def _seeds(stats: dict[str, Stat]) -> int:
    return max((s.n for s in stats.values()), default=0)


def _cells(stats: dict[str, Stat]) -> list[float | None]:
    cells = []
    for m in METRICS:
        s = stats.get(m)
        cells += [None, None] if s is None else [s.mean, s.std]
    return cells
