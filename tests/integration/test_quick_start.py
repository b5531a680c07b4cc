"""The README's quick start, run verbatim in a fresh clone of the repository (slow: it installs everything, then runs
the debug job and the main job, about 15 minutes on 2 cores)."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def quick_start_commands() -> list[str]:
    """The commands of the first bash block under "## Quick start", comments dropped."""
    section = REPO.joinpath("README.md").read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL).group(1)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_the_quick_start_names_set_up_a_fast_run_and_the_main_job():
    assert quick_start_commands() == ["make install", "make run ARGS=debug=fast", "make run"]


def fresh_clone(target: Path) -> Path:
    if (REPO / ".git").exists():
        subprocess.run(["git", "clone", "-q", str(REPO), str(target)], check=True)
    else:  # a copy of a checkout without its history: what git would clone
        shutil.copytree(REPO, target, ignore=shutil.ignore_patterns(".venv", "outputs", "*.egg-info", "__pycache__"))
    return target


@pytest.mark.slow
def test_the_quick_start_runs_verbatim_in_a_fresh_clone(tmp_path):
    clone = fresh_clone(tmp_path / "clone")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH", "FOD_", "WANDB"))}
    env |= {"HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "cache"), "WANDB_MODE": "offline"}
    (tmp_path / "home").mkdir()
    for command in quick_start_commands():
        proc = subprocess.run(command, shell=True, cwd=clone, env=env, capture_output=True, text=True, timeout=1800)
        assert proc.returncode == 0, f"{command}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    for task, categories in (("debug", ["brick"]), ("run", ["brick", "grass", "gravel"])):
        (results,) = (clone / "outputs" / task / "runs").glob("*/results.json")
        record = json.loads(results.read_text())
        assert record["run"]["status"] == "done" and list(record["categories"]) == categories
        assert (results.parent / "summary.md").is_file() and (results.parent / "brick" / "pictures").is_dir()
