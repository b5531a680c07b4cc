"""The one ending of a run folder, a sweep folder or ``summarize``: the summary files, what did not finish, and the
folder's W&B summary run."""

import sys
from pathlib import Path

from fod_lightning.reporting import Summary, summarize_folder


def summarize_and_log(folder: Path, wandb: bool = False, show: bool = True, project: str | None = None,
                      entity: str | None = None, group: str | None = None) -> tuple[Summary, Path | None]:  # fmt: skip
    """Write ``summary.md``, ``.csv`` and ``.png`` of ``folder``; print the summary (``show``) and a warning per job
    that did not finish; with ``wandb``, write (or update) the folder's W&B summary run. Returns the summary and the
    W&B run's folder (None without ``wandb``)."""
    summary = summarize_folder(folder)
    if show:
        print(summary.markdown)
    for job in summary.not_finished:
        print(f"warning: job {job.folder} {job.status}: {job.detail}", file=sys.stderr)
    if not wandb:
        return summary, None
    from fod_lightning.reporting.wandb_summary import log_summary_run

    return summary, log_summary_run(summary, project, entity, group)
