"""The jobs below a run or sweep folder, their status, and their settings (everything but category and seed)."""

import json
from dataclasses import dataclass, field
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from fod_lightning.reporting.results import METRICS, best_values
from fod_lightning.reporting.run_record import config_sha256

# Config keys that are not part of a setting: what varies inside one (category, seed) and where things go.
# (ckpt_path: a resumed run is the setting it resumes; keep_checkpoints, overwrite: what is kept, not what is measured;
# model.net.seed: the baselines' random choices follow the seed)
NOT_SETTINGS = ("seed", "data.category", "task_name", "optimized_metric", "paths", "hydra", "logger", "callbacks",
                "trainer.default_root_dir", "trainer.enable_progress_bar", "data.num_workers", "ckpt_path",
                "keep_checkpoints", "overwrite", "model.net.seed")  # fmt: skip
HEADER = ("model", "setting", "benchmark", "backbone", "protocol", "test_ckpt")  # shown with each setting
COSTS = ("fit_seconds", "score_seconds_per_image", "fit_peak_rss_mib", "fit_peak_cuda_mib")  # results' "cost"
SKIPPED_FOLDERS = (".submitit", "wandb")


@dataclass
class Job:
    folder: Path
    status: str  # done | failed | unfinished
    detail: str = ""  # the error, or what is missing
    results: dict | None = None

    @property
    def run(self) -> dict:
        return (self.results or {}).get("run", {})


@dataclass
class Row:
    """One measurement: a category of a setting with one seed."""

    setting: str  # the setting's key
    category: str
    seed: str
    test: dict[str, float]
    best: dict[str, float]
    job: Path
    cost: dict[str, float] = field(default_factory=dict)  # COSTS: what fitting and testing the category took


@dataclass
class Setting:
    key: str
    label: str = ""
    header: dict = field(default_factory=dict)  # benchmark, backbone, protocol, test_ckpt
    overrides: dict[str, str] = field(default_factory=dict)
    objective: dict[str, list[float]] = field(default_factory=dict)  # optimized_metric -> one value per job


def find_jobs(folder: Path) -> list[Job]:
    """Every job folder below ``folder``: one with a ``results.json`` or a Hydra ``.hydra`` folder."""
    candidates = {p.parent for p in folder.rglob("results.json")}
    candidates |= {p.parent for p in folder.rglob(".hydra") if (p / "config.yaml").is_file()}
    jobs = []
    for job_dir in sorted(candidates, key=_natural):
        if any(part in SKIPPED_FOLDERS for part in job_dir.relative_to(folder).parts):
            continue
        jobs.append(read_job(job_dir))
    return jobs


def _natural(path: Path) -> list:
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in path.parts]


def read_job(job_dir: Path) -> Job:
    path = job_dir / "results.json"
    if not path.is_file():
        return Job(
            job_dir, "unfinished", "no results.json: the job did not start or was stopped before its first write"
        )
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        return Job(job_dir, "failed", f"unreadable results.json ({err})")
    run = results.get("run", {})
    status = run.get("status", "done")  # files written before the run section existed are complete
    if status == "failed":
        return Job(job_dir, "failed", run.get("error", ""), results)
    planned = run.get("categories_planned", list(results.get("categories", {})))
    missing = [c for c in planned if c not in results.get("categories", {})]
    if status != "done":
        detail = f"stopped while running (categories without results: {', '.join(missing) or 'none'})"
        return Job(job_dir, "unfinished", detail, results)
    return Job(job_dir, "done", "", results)


def setting_key(results: dict) -> str:
    """Hash of the job's resolved config less :data:`NOT_SETTINGS`, with benchmark/backbone/protocol."""
    config = json.loads(json.dumps(results.get("run", {}).get("config", {})))
    for key in NOT_SETTINGS:
        parent, _, leaf = key.rpartition(".")
        node = config
        for part in parent.split(".") if parent else []:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(leaf, None)
    return config_sha256({"config": without_nulls(config), "header": header_of(results)})[:12]


def without_nulls(node):
    """``node`` less its null-valued keys: a key a later version added with a null default (off) is the same setting
    as the key's absence in the results of jobs run before it existed."""
    if isinstance(node, dict):
        return {k: without_nulls(v) for k, v in node.items() if v is not None}
    return [without_nulls(v) for v in node] if isinstance(node, list) else node


def header_of(results: dict) -> dict:
    return {k: results.get(k) for k in HEADER}


def rows_of(jobs: list[Job]) -> tuple[list[Row], dict[str, Setting], list[str]]:
    """Measurements of every job with results, their settings (labelled), and notes on duplicates."""
    rows, settings, seen, notes = [], {}, {}, []
    for job in jobs:
        if job.results is None:
            continue
        key = setting_key(job.results)
        setting = settings.setdefault(key, Setting(key, header=header_of(job.results)))
        setting.overrides.update(_override_values(job.run.get("overrides", [])))
        objective = job.run.get("objective") or {}
        if isinstance(objective.get("value"), int | float):
            setting.objective.setdefault(objective["name"], []).append(objective["value"])
        seed = str(job.run.get("seed", "?"))
        for category, metrics in job.results.get("categories", {}).items():
            test = {m: metrics[m] for m in METRICS if m in metrics}
            where = (key, category, seed)
            if where in seen:
                notes.append(f"{category} seed {seed} appears twice in one setting ({seen[where]}, {job.folder}): "
                             f"the first is used")  # fmt: skip
                continue
            seen[where] = job.folder
            cost = {c: v for c, v in (metrics.get("cost") or {}).items() if c in COSTS and v is not None}
            if "fit_seconds" in metrics:  # top-level in results.json: also before costs were recorded
                cost.setdefault("fit_seconds", metrics["fit_seconds"])
            rows.append(Row(key, category, seed, test, best_values(metrics), job.folder, cost))
    label_settings(settings, jobs)
    return rows, settings, notes


def _override_values(overrides: list[str]) -> dict[str, str]:
    values = {}
    for o in OverridesParser.create().parse_overrides(overrides):
        key = o.get_key_element()
        if not _excluded(key.lstrip("+~")):
            values[key.lstrip("+~")] = o.get_value_element_as_str()
    return values


def _excluded(key: str) -> bool:
    return any(key == k or key.startswith(f"{k}.") or key.startswith(f"{k}/") for k in NOT_SETTINGS)


def readable(value: str) -> str:
    """A setting's value for labels: long numbers to 4 significant digits (Optuna samples 0.27236750534100307)."""
    try:
        number = float(value)
    except ValueError:
        return value
    return value if len(value) <= 8 else f"{number:.4g}"


EPOCH_KEYS = ("trainer.max_epochs", "trainer.max_steps", "trainer.max_time", "trainer.check_val_every_n_epoch",
              "trainer.min_epochs", "early_stopping_patience")  # fmt: skip


def fitted_in_one_pass(key: str, jobs: list[Job]) -> bool:
    """Whether every category of the setting's jobs was fitted in one pass (a statistics model: no epochs)."""
    flags = [c.get("fitted_in_one_pass") for j in jobs if j.results is not None and setting_key(j.results) == key
             for c in j.results.get("categories", {}).values() if isinstance(c, dict)]  # fmt: skip
    return bool(flags) and all(flags)


def label_settings(settings: dict[str, Setting], jobs: list[Job]) -> None:
    """Each setting's label: the overrides whose values differ between settings; when none differ (one setting), the
    overrides every job was given (``default`` if none)."""
    configs = {}
    for job in jobs:
        if job.results is not None:
            configs.setdefault(setting_key(job.results), OmegaConf.create(job.run.get("config", {})))
    keys = sorted({k for s in settings.values() for k in s.overrides})

    def value(setting: Setting, key: str) -> str:
        if key in setting.overrides:
            return setting.overrides[key]
        found = OmegaConf.select(configs.get(setting.key, OmegaConf.create()), key.replace("/", "."), default=None)
        return "default" if found is None or OmegaConf.is_config(found) else str(found)

    varying = [k for k in keys if len({value(s, k) for s in settings.values()}) > 1]
    one_pass = {key for key in settings if fitted_in_one_pass(key, jobs)}
    for s in settings.values():
        shown = varying or sorted(s.overrides)
        if s.key in one_pass:  # no epochs to speak of: trainer.max_epochs=100 would mislead
            shown = [k for k in shown if k not in EPOCH_KEYS]
        s.label = ", ".join(f"{k}={readable(value(s, k))}" for k in shown) or "default"
    labels = [s.label for s in settings.values()]
    for s in settings.values():
        if labels.count(s.label) > 1:  # same overrides, different configs (e.g. other code defaults)
            s.label = f"{s.label} #{s.key[:6]}"
