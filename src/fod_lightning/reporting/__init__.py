"""A run or sweep folder as tables: jobs grouped by setting, mean and std over seeds, Markdown + CSV + figure.

Shared by ``python -m fod_lightning.summarize``, the end of a single run and the end of a multirun.
"""

from dataclasses import dataclass, field
from pathlib import Path

from fod_lightning.errors import UserError
from fod_lightning.reporting.jobs import Job, Setting, find_jobs, rows_of
from fod_lightning.reporting.plots import setting_bars
from fod_lightning.reporting.results import METRICS, READINGS
from fod_lightning.reporting.tables import cost_stats, setting_table, write_csv, write_markdown


class NoResultsError(UserError, FileNotFoundError):
    """A folder to summarise holds no job."""


@dataclass
class Summary:
    folder: Path
    jobs: list[Job]
    settings: dict[str, Setting]
    tables: dict[str, dict[str, dict]]  # setting key -> reading -> category -> metric -> Stat
    notes: list[str]
    costs: dict[str, dict] = field(default_factory=dict)  # setting key -> cost -> Stat (over its jobs)
    markdown: str = ""
    figure: Path | None = None

    @property
    def not_finished(self) -> list[Job]:
        return [j for j in self.jobs if j.status != "done"]


def summarize_folder(folder: Path) -> Summary:
    """Read every job below ``folder`` and write ``summary.md``, ``summary.csv`` and ``summary.png`` there."""
    jobs = find_jobs(folder)
    if not jobs:
        raise NoResultsError(f"no results.json below {folder}: point at a run or multirun output folder")
    rows, settings, notes = rows_of(jobs)
    settings = {k: s for k, s in settings.items() if any(r.setting == k for r in rows)}  # failed jobs: listed only
    tables = {key: {reading: setting_table([r for r in rows if r.setting == key], reading) for reading in READINGS}
              for key in settings}  # fmt: skip
    costs = {key: cost_stats([r for r in rows if r.setting == key]) for key in settings}
    summary = Summary(folder, jobs, settings, tables, notes, costs)
    title = f"{folder.name}: {len(settings)} setting(s), {len(jobs)} job(s)"
    summary.markdown = write_markdown(folder / "summary.md", title, tables, settings, jobs, notes, folder, costs)
    write_csv(folder / "summary.csv", tables, settings, costs)
    if rows:
        summary.figure = folder / "summary.png"
        test_tables, best_tables = ({k: t[reading] for k, t in tables.items()} for reading in ("test", "best"))
        setting_bars(test_tables, {k: s.label for k, s in settings.items()}, METRICS,
                     "test split: mean over seeds, error bar = std; black: the best validation epoch",
                     summary.figure, best_tables)  # fmt: skip
    return summary
