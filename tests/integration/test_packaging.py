"""Packaging: the wheel holds the code, the configs (built from the top-level conf/) and the licence, and its
console script runs from another directory with nothing of the checkout on the path."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from fod_lightning.utils import config_dir

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ("fod-run", "fod-predict", "fod-export", "fod-summarize", "fod-bench")
# debug=fast made smaller still: 32 px, the tiny embedded benchmark (as tests/conftest.py's TINY).
TINY_RUN = ["debug=fast", "data.image_size=32", "data.category=brick", "data.n_train=4", "data.n_test_good=2",
            "data.n_test_per_defect=1", "data.crop_size=64"]  # fmt: skip


def test_the_package_list_names_every_package_under_src():
    """pyproject.toml spells the packages out (its package-dir maps conf/ in): a new one must be added there."""
    tomllib = pytest.importorskip("tomllib")
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    src = ROOT / "src"
    found = {".".join(p.parent.relative_to(src).parts) for p in src.glob("*/**/__init__.py")}
    assert listed == found | {"fod_lightning.conf"}


def test_a_checkout_reads_the_top_level_conf():
    if not Path(config_dir.__file__).resolve().is_relative_to(ROOT / "src"):
        pytest.skip("fod_lightning is imported from an installed wheel, not from this checkout")
    assert Path(config_dir.CONFIG_DIR) == ROOT / "conf"
    assert (ROOT / "conf" / "run.yaml").is_file()
    assert not (ROOT / "src" / "fod_lightning" / "conf").exists(), "conf/ is the one source: no copy under src/"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the sources (setuptools builds in the source tree: keep the checkout clean)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "src", source / "src", ignore=skip)
    shutil.copytree(ROOT / "conf", source / "conf", ignore=skip)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp / "dist"),
                    str(source)], check=True, timeout=600)  # fmt: skip
    (built,) = (tmp / "dist").glob("fod_lightning-*.whl")
    return built


@pytest.mark.slow
def test_the_wheel_holds_every_config_the_licence_and_the_console_scripts(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {f"fod_lightning/conf/{p.relative_to(ROOT / 'conf').as_posix()}" for p in (ROOT / "conf").rglob("*.yaml")}
    assert "fod_lightning/conf/run.yaml" in configs and configs <= names
    assert "fod_lightning/utils/config_dir.py" in names and "fod_lightning/run.py" in names
    (licence,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    assert "MIT" in zipfile.ZipFile(wheel).read(licence).decode()
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert all(f"{script} = " in text for script in SCRIPTS)


@pytest.mark.slow
def test_the_installed_wheel_runs_from_another_directory(wheel, tmp_path):
    """pip install --target (no dependencies: this venv's provide them), then its fod-run from elsewhere."""
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(site), str(wheel)],
                   check=True, timeout=600)  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = dict(os.environ, PYTHONPATH=str(site), WANDB_MODE="offline", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1",
               XDG_CACHE_HOME=str(tmp_path / "cache"), FOD_ROOT=str(tmp_path / "root"))  # fmt: skip
    code = "import fod_lightning.utils.config_dir as c; print(c.__file__, c.CONFIG_DIR)"
    where = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True,
                           check=True)  # fmt: skip
    module, configs = where.stdout.split()
    assert Path(module).is_relative_to(site) and Path(configs) == site / "fod_lightning" / "conf"

    out = tmp_path / "out"
    script = site / "bin" / "fod-run"
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "fod_lightning.run"]
    proc = subprocess.run([*command, *TINY_RUN, f"hydra.run.dir={out}"], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert "brick" in json.dumps(results)
