"""Every shell command of README.md is exercised: each ``python -m fod_lightning.<entry>`` command composes with
Hydra (fast), and every command that can run on this machine runs (slow, ``make test-all``).

The commands come from README.md's ```bash blocks (``\\`` continuations joined, comments dropped). HANDLING maps
each to how it is exercised; a command missing from HANDLING fails ``test_every_readme_command_is_handled``
("add it to the README test"), and so does a HANDLING entry no longer in the README.

Slow runs append ``debug=fast`` (a tiny model, one epoch of 2 batches: conf/debug/fast.yaml) to the README's
overrides; each ``/data/<X>`` root is replaced by a tmp folder holding a tiny dataset in that benchmark's layout
(``tests/readme_datasets.py``); sweeps are cut to a few jobs (HANDLING says which values are kept). Each command
runs in a folder of its own, so relative paths in it (``outputs/grid``, ``preds``, ``ckpts/...``) stay as written.
``run``, ``predict`` and ``export`` run in this process through their Hydra ``main`` with the command's argv (the
CLI path, without a new interpreter); DDP commands run as subprocesses (Lightning starts the other ranks by
re-running the command line).
"""

import csv
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import hydra
import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.callbacks import Callbacks
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.types import RunMode
from omegaconf import OmegaConf, open_dict

from fod_lightning.run import CONFIG_DIR

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"

# The entry points a README command may start with: (prefix tokens, entry name).
ENTRY_POINTS = [
    (("python", "-m", "fod_lightning.run"), "run"),
    (("fod-run",), "run"),
    (("python", "-m", "fod_lightning.predict"), "predict"),
    (("fod-predict",), "predict"),
    (("python", "-m", "fod_lightning.export"), "export"),
    (("fod-export",), "export"),
    (("python", "-m", "fod_lightning.summarize"), "summarize"),
    (("fod-summarize",), "summarize"),
]
CONFIG_NAMES = {"run": "run", "predict": "predict", "export": "export"}  # Hydra entries: their primary config


@dataclass(frozen=True)
class Command:
    line: int  # where it starts in README.md
    tokens: tuple[str, ...]  # as the shell splits it (quotes removed), comment dropped

    @property
    def text(self) -> str:
        return " ".join(self.tokens)

    @property
    def entry(self) -> str | None:
        return entry_of(self.tokens)[0]

    @property
    def args(self) -> list[str]:
        return entry_of(self.tokens)[1]


def entry_of(tokens) -> tuple[str | None, list[str]]:
    for prefix, name in ENTRY_POINTS:
        if tuple(tokens[: len(prefix)]) == prefix:
            return name, list(tokens[len(prefix) :])
    return None, list(tokens)


def readme_commands(path: Path = README) -> list[Command]:
    """Every command of the file's ```bash blocks, in order."""
    commands, in_bash, pending = [], False, None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            in_bash = stripped == "```bash" if not in_bash else False
            continue
        if not in_bash:
            continue
        start, text = (pending[0], f"{pending[1]} {stripped}") if pending else (number, stripped)
        if text.endswith("\\"):
            pending = (start, text[:-1])
            continue
        pending = None
        if tokens := shlex.split(text, comments=True):
            commands.append(Command(start, tuple(tokens)))
    assert pending is None, f"README.md: a command ending in a backslash at line {pending[0]} never ends"
    return commands


# ---------------------------------------------------------------------------------------------------------------
# How each README command is exercised.


@dataclass(frozen=True)
class Skip:
    """Not run, for the reason given. (Hydra commands among them still compose in the fast test.)"""

    reason: str


@dataclass(frozen=True)
class ComposeOnly:
    """Composed by the fast test only (launcher and sweeper configs included), never run here: the reason."""

    reason: str


@dataclass(frozen=True)
class PathsOnly:
    """Not run, for the reason given; its path arguments, ``outputs/<task>/multiruns/<date>`` being the folder of the
    multirun above it in README.md, must each match files that multirun wrote."""

    reason: str


@dataclass(frozen=True)
class Run:
    """Run here (slow test). ``run`` commands get ``debug=fast``; ``/data/<X>`` roots become tiny datasets.

    set: README overrides whose value is replaced (the key must be in the command), e.g. a sweep cut short.
    add: overrides appended after ``debug=fast``. instead: the command to run for a ``make`` line.
    checkpoint_from: the README command whose run gives the checkpoint that replaces ``ckpt_path``'s placeholder.
    authors_from: the README command whose checkpoint's net is saved in the authors' layout at the command's
    ``ckpt_path`` and ``reader.reference_features`` paths. subprocess: run as a new process (DDP).
    """

    why: str = ""
    set: dict = field(default_factory=dict)
    add: tuple = ()
    instead: str | None = None
    checkpoint_from: str | None = None
    authors_from: str | None = None
    subprocess: bool = False


MAKE_RUN = "make run"
MVTEC_BOTTLE = "python -m fod_lightning.run data=mvtec data.root=/data/mvtec_anomaly_detection data.category=bottle"
UNIFIED_MVTEC = f"{MVTEC_BOTTLE.removesuffix('bottle')}all setting=unified"
LITE0 = "model/net/backbone=tf_efficientnet_lite0"
NO_HUB = "wide_resnet50_2 needs hub weights (no internet here): tf_efficientnet_lite0 with its offline weights"
# trainer=ddp brings compile_correlation=true (conf/trainer_extras/ddp.yaml): on a CPU that is an inductor C++ build
# per rank and job, about 25 s each here (tests/test_ddp.py runs DDP with it).
NO_COMPILE = "model.net.compile_correlation=false"
NO_COMPILE_WHY = "not compiled: an inductor C++ build per rank on CPU (~25 s), tested with DDP in tests/test_ddp.py"

HANDLING: dict[str, Skip | ComposeOnly | PathsOnly | Run] = {
    # Set-up
    MAKE_RUN: Run(instead="python -m fod_lightning.run", why="the Makefile's run recipe (checked), with debug=fast"),
    "make test": Skip("what CI runs: this file is part of it"),
    "make install": Skip("the quick start's set-up: tests/integration/test_quick_start.py runs it in a fresh clone"),
    "make run ARGS=debug=fast": Run(
        instead="python -m fod_lightning.run debug=fast", why="the Makefile's run recipe with ARGS (checked)"
    ),
    "python3 -m venv .venv": Skip("set-up without make (what make install does)"),
    ". .venv/bin/activate": Skip("set-up without make"),
    "pip install torch==2.14.1 torchvision==0.29.1": Skip("set-up without make: the Makefile's TORCH_PAIR"),
    "pip install -e .[dev]": Skip("= make install"),
    "eval $(fod-run -sc install=bash)": Skip("shell set-up (Hydra's completion script, for the console script)"),
    "pip install torch==2.11.0 torchvision==0.26.0 --index-url https://download.pytorch.org/whl/cu130": Skip(
        "GPU wheels"
    ),
    "fod-run trainer=gpu data=mvtec data.root=/data/mvtec_anomaly_detection data.category=bottle": ComposeOnly(
        "no GPU here"
    ),
    # Benchmarks
    MVTEC_BOTTLE: Run(),
    "python -m fod_lightning.run data=btad data.root=/data/BTech_Dataset_transformed data.category=all": Run(),
    "python -m fod_lightning.run data=mvtec3d data.root=/data/mvtec_3d_anomaly_detection data.category=bagel": Run(),
    "python -m fod_lightning.run data=visa data.root=/data/VisA data.category=all": Run(),
    "python -m fod_lightning.run data=folder data.root=/data/widgets data.normal_dir=good "
    "data.abnormal_dirs=[scratch,dent] data.mask_dir=masks data.category=widget": Run(),
    # One model for every category
    UNIFIED_MVTEC: ComposeOnly("the tiny MVTec AD here has one category; test_unified.py runs two of each layout"),
    "python -m fod_lightning.run -m setting=separate,unified model=patchcore data.category=all": Run(
        why="both settings on the embedded benchmark's three categories"
    ),
    "bash experiments/2026-12-06_unified/run.sh OUT A": Skip("a study (about 5 min): experiments/2026-12-06_unified/"),
    "bash experiments/2026-12-06_unified/run.sh OUT B": Skip("a study (about 35 min): experiments/2026-12-06_unified/"),
    # MVTec AD 2
    "python -m fod_lightning.run experiment=mvtec_ad2 data.root=/data/mvtec_ad_2": Run(why="a tiny layout: can, vial"),
    "python -m fod_lightning.run experiment=mvtec_ad2 data.root=/data/mvtec_ad_2 model=patchcore submission=true": Run(
        why="the server's files of the tiny layout's private splits, checked and packed"
    ),
    "python -m fod_lightning.run experiment=mvtec_ad2_fod_plus data.root=/data/mvtec_ad_2 data.category=can": Run(),
    "bash experiments/2026-12-06_mvtec_ad2/run.sh OUT": Skip("a study (20 min): experiments/2026-12-06_mvtec_ad2/"),
    # Your own images: which model
    "python -m fod_lightning.run data=folder data.root=/data/widgets data.normal_dir=good "
    "data.abnormal_dirs=[scratch,dent] data.mask_dir=masks data.category=widget model=patchcore": Run(),
    "python -m fod_lightning.run experiment=paper_mvtec data.root=/data/mvtec_anomaly_detection": Run(
        add=(LITE0,), why=NO_HUB
    ),
    "python -m fod_lightning.run -m data=mvtec data.root=/data/mvtec data.category=bottle,cable,screw seed=1,2,3": Run(
        set={"data.category": "bottle", "seed": "1,2"}, why="2 of the 9 jobs: one category, two seeds"
    ),
    "python -m fod_lightning.summarize outputs/run/multiruns/<date>": Run(why="on the sweep folder of the -m above"),
    # FOD beside the baselines
    "python -m fod_lightning.run -m experiment=compare": Run(why="every job of the comparison, each with debug=fast"),
    "python -m fod_lightning.run experiment=fod_plus": Run(why="the patch memory through fit, validation and test"),
    "python -m fod_lightning.summarize outputs/compare/multiruns/<date>": Run(why="on the comparison's sweep folder"),
    "python -m fod_lightning.run model=patchcore data=mvtec data.root=/data/mvtec_anomaly_detection "
    "data.category=bottle model/net/backbone=wide_resnet50_2": Run(
        set={"model/net/backbone": "tf_efficientnet_lite0"}, why=NO_HUB
    ),
    # Running at scale
    "python -m fod_lightning.run -m data=mvtec data.root=/data/mvtec data.category=bottle,cable,screw seed=1,2,3 "
    "model.lambda1=0.5,1.0 hydra.sweep.dir=outputs/grid": Run(
        set={"data.category": "bottle", "seed": "1"}, why="2 of the 18 jobs: one category and seed, both settings"
    ),
    "python -m fod_lightning.summarize outputs/grid": Run(),
    "python -m fod_lightning.run -m data.category=brick,grass seed=1,2 model.lambda1=0.5,1.0 data.n_train=10 "
    "data.n_test_good=4 data.n_test_per_defect=2 data.crop_size=128 data.image_size=64 trainer.max_epochs=2 "
    "trainer.check_val_every_n_epoch=1": Run(
        set={"data.category": "brick", "seed": "1"}, why="2 of the 8 jobs: one category and seed, both settings"
    ),
    "python -m fod_lightning.run -m hydra/launcher=joblib hydra.launcher.n_jobs=4 data=mvtec data.root=/data/mvtec "
    "data.category=bottle,cable,screw,zipper seed=1,2": Run(
        set={"hydra.launcher.n_jobs": "2", "data.category": "bottle,cable", "seed": "1"},
        why="2 of the 8 jobs in 2 worker processes (2 cores here)",
    ),
    "python -m fod_lightning.run trainer=ddp trainer.devices=4 data=visa data.root=/data/VisA data.category=pcb1": (
        ComposeOnly("4 GPUs: no GPU here (4 CPU ranks would be a different command; the CPU one below runs)")
    ),
    "python -m fod_lightning.run trainer=ddp trainer.accelerator=cpu trainer.devices=2 data.category=brick": Run(
        add=(NO_COMPILE,), subprocess=True, why=NO_COMPILE_WHY
    ),
    "python -m fod_lightning.run -m trainer=ddp trainer.devices=2 data.category=brick,grass seed=1,2": Run(
        set={"data.category": "brick", "seed": "1"},
        add=(NO_COMPILE,),
        subprocess=True,
        why="1 of the 4 jobs (tests/test_ddp.py runs two); trainer.accelerator=auto is the CPU here (2 gloo ranks); "
        + NO_COMPILE_WHY,
    ),
    "python -m fod_lightning.run -m hydra/launcher=slurm hydra.launcher.partition=gpu hydra.launcher.gpus_per_node=1 "
    "hydra.launcher.cpus_per_task=8 hydra.launcher.mem_gb=32 hydra.launcher.timeout_min=240 data=mvtec "
    "data.root=/data/mvtec data.category=bottle,cable,capsule seed=1,2,3 model.lambda1=0.5,1.0": ComposeOnly(
        "no SLURM here (tests/test_sweeps.py renders the #SBATCH lines and runs submitit_local)"
    ),
    "python -m fod_lightning.run -m hydra/launcher=slurm hydra.launcher.partition=gpu hydra.launcher.gpus_per_node=4 "
    "hydra.launcher.mem_gb=128 trainer=ddp data=visa data.root=/data/VisA data.category=pcb1,pcb4 seed=1,2": (
        ComposeOnly("no SLURM and no GPU here")
    ),
    "python -m fod_lightning.summarize outputs/run/multiruns/<date> --wandb": Run(
        why="the SLURM sweeps above only compose: on the nearest sweep above that ran, W&B offline"
    ),
    "python -m fod_lightning.run hparams_search=fod_optuna data=mvtec data.root=/data/mvtec data.category=bottle "
    "hydra.sweeper.n_trials=40": Run(
        set={"hydra.sweeper.n_trials": "2"},
        add=("model.net.d_models.0=16", "model.net.d_models.1=32", "trainer.max_epochs=1"),
        why="2 trials; the search space's widths and epochs fixed on the command line (Optuna then leaves them out "
        "of the search), as debug=fast alone would train 128-256 wide models for 25-100 epochs",
    ),
    "python -m fod_lightning.run -m logger=wandb data.category=brick,grass,gravel seed=1,2,3 model.lambda1=0.5,1.0": (
        Run(set={"data.category": "brick", "seed": "1"}, why="2 of the 18 jobs; W&B offline (no server here)")
    ),
    "wandb sync outputs/run/multiruns/<date>/*/wandb/offline-run-* outputs/run/multiruns/<date>/wandb/offline-run-*": (
        PathsOnly("uploads to a W&B server: no internet here (the offline runs it names are checked)")
    ),
    # Using a fitted model
    "python -m fod_lightning.predict ckpt_path=CKPT input=/data/line3 output_dir=preds": Run(checkpoint_from=MAKE_RUN),
    "python -m fod_lightning.predict ckpt_path=CKPT input=/data/line3/*.png output_dir=preds_png threshold=0.9": Run(
        checkpoint_from=MAKE_RUN
    ),
    # The authors' checkpoints
    "python -m fod_lightning.run data=mvtec data.root=/data/mvtec data.category=bottle train=false "
    "ckpt_path=ckpts/bottle-pix.pth reader=fod_authors reader.reference_features=ref_features/bottle.pkl "
    "model/net/backbone=wide_resnet50_2": (
        Run(authors_from=MVTEC_BOTTLE, set={"model/net/backbone": "tf_efficientnet_lite0"}, why=NO_HUB)
    ),
    "python -m fod_lightning.predict ckpt_path=ckpts/bottle-pix.pth reader=fod_authors "
    "reader.reference_features=ref_features/bottle.pkl model/net/backbone=wide_resnet50_2 input=/data/new "
    "output_dir=preds_authors": Run(
        authors_from=MVTEC_BOTTLE, set={"model/net/backbone": "tf_efficientnet_lite0"}, why=NO_HUB
    ),
    # Export
    "pip install -e .[export]": Skip(
        "changes the environment and needs the registry; tests/test_packaging.py installs the package, the dev extra "
        "(make install) holds the export extra's packages and tests/test_export.py uses them"
    ),
    "python -m fod_lightning.export ckpt_path=out/brick/checkpoints/last.ckpt output=deploy/brick.onnx": Run(
        checkpoint_from=MAKE_RUN
    ),
}

COMMANDS = readme_commands()

# Multiruns whose hydra.sweep.dir is the default (${paths.log_dir}/..., through ${hydra:runtime.cwd}) need the
# Hydra config set before the sweeper reads the sweep folder (SweepCallback.on_multirun_start does it). A known
# bug of that kind would be named here: its commands become strict xfails.
SWEEP_DIR_BUG = None


def multirun_above(command: Command) -> Command:
    """The nearest multirun above ``command`` in README.md that runs here (a summarize works on its folder)."""
    above = [c for c in COMMANDS if c.line < command.line and c.entry == "run" and is_multirun(c)
             and isinstance(HANDLING.get(c.text), Run)]  # fmt: skip
    assert above, f"README.md:{command.line}: no multirun above {command.text} runs here"
    return above[-1]


def is_multirun(command: Command) -> bool:
    return bool({"-m", "--multirun"} & set(command.args)) or any(a.startswith("hparams_search=") for a in command.args)


def hits_sweep_dir_bug(command: Command) -> bool:
    if SWEEP_DIR_BUG is None or command.entry not in ("run", "summarize", None):
        return False
    if command.entry != "run":  # summarize, wandb sync: on the folder of a multirun above
        return "<date>" in command.text and hits_sweep_dir_bug(multirun_above(command))
    return is_multirun(command) and not any(a.startswith("hydra.sweep.dir=") for a in command.args)


def with_known_bugs(commands: list[Command]) -> list:
    mark = pytest.mark.xfail(strict=True, reason=SWEEP_DIR_BUG)
    return [pytest.param(c, marks=mark) if hits_sweep_dir_bug(c) else c for c in commands]


def command_id(command: Command) -> str:
    return f"L{command.line}-{(command.entry or command.tokens[0])}"


def test_every_readme_command_is_handled():
    texts = [c.text for c in COMMANDS]
    assert len(texts) >= 20, "README.md: its ```bash blocks were not found"
    unknown = [f"README.md:{c.line}: {c.text}" for c in COMMANDS if c.text not in HANDLING]
    assert not unknown, "README commands no test exercises: add it to the README test (HANDLING in " + (
        f"{Path(__file__).name}):\n" + "\n".join(unknown)
    )
    gone = [t for t in HANDLING if t not in texts]
    assert not gone, "HANDLING entries no longer in README.md (remove or update them):\n" + "\n".join(gone)
    for c in COMMANDS:  # a command that is not an entry point runs something else, named; only Hydra ones compose
        handling = HANDLING[c.text]
        if isinstance(handling, Run) and c.entry is None:
            assert handling.instead, f"README.md:{c.line}: {c.text} runs, but HANDLING does not say what runs"
        if isinstance(handling, ComposeOnly):
            assert c.entry in CONFIG_NAMES, f"README.md:{c.line}: {c.text} is not a Hydra command"


def test_make_run_is_the_run_entry_point():
    """``make run`` runs ``python -m fod_lightning.run $(ARGS)``: what HANDLING runs in its place."""
    recipe = re.search(r"^run:.*\n\t(.+)$", (REPO / "Makefile").read_text(), re.MULTILINE).group(1)
    assert recipe == "$(PY) -m fod_lightning.run $(ARGS)"
    assert HANDLING[MAKE_RUN].instead == "python -m fod_lightning.run"


# ---------------------------------------------------------------------------------------------------------------
# Fast: every Hydra command composes as written.


def first_combination(args: list[str]) -> tuple[list[str], int]:
    """The overrides of a sweep's first job (``a,b,c`` -> ``a``) and the number of jobs it has."""
    overrides, jobs = [], 1
    for override in OverridesParser.create().parse_overrides(args):
        if override.is_sweep_override():
            values = list(override.sweep_string_iterator())
            overrides.append(f"{override.get_key_element()}={values[0]}")
            jobs *= len(values)
        else:
            overrides.append(override.input_line)
    return overrides, jobs


def jobs_of(args: list[str]) -> int:
    """How many jobs a basic sweep launches: its command line's sweeps times the config's ``hydra.sweeper.params``
    (``experiment=compare``'s models and seeds) that the command line does not set."""
    overrides, jobs = first_combination(args)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            sweeper = compose("run", overrides=overrides, return_hydra_config=True).hydra.sweeper
    finally:
        GlobalHydra.instance().clear()
    if not str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return jobs
    given = {o.get_key_element() for o in OverridesParser.create().parse_overrides(args)}
    for key, values in (sweeper.get("params") or {}).items():
        if key not in given:
            jobs *= len(list(OverridesParser.create().parse_override(f"{key}={values}").sweep_string_iterator()))
    return jobs


def compose_command(command: Command):
    """The command's config as its entry point composes it (the first job of a sweep), Hydra's own included."""
    args = command.args
    multirun = "-m" in args or "--multirun" in args
    args = [a for a in args if a not in ("-m", "--multirun")]
    overrides, jobs = first_combination(args)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(CONFIG_NAMES[command.entry], overrides=overrides, return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()
    return cfg, multirun, jobs


@pytest.mark.parametrize("command", with_known_bugs([c for c in COMMANDS if c.entry in CONFIG_NAMES]), ids=command_id)
def test_readme_command_composes(command: Command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative folders (outputs/grid) resolve, and are checked, in tmp_path
    cfg, multirun, jobs = compose_command(command)
    swept = multirun or cfg.hydra.mode == RunMode.MULTIRUN
    assert swept or jobs == 1, f"README.md:{command.line}: a comma sweep without -m: {command.text}"
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path)
    if swept:  # the sweep folder as Hydra's sweeper reads it: after the multirun callbacks, before any job
        HydraConfig.instance().cfg = None
        Callbacks(cfg).on_multirun_start(config=cfg, config_name=CONFIG_NAMES[command.entry])
        assert str(cfg.hydra.sweep.dir)
    HydraConfig.instance().set_config(cfg)
    try:
        job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
        OmegaConf.resolve(job)  # every interpolation of the job's config resolves
        if command.entry == "run":
            from fod_lightning.engine.checks import check_backbone_node

            check_backbone_node(job)
            hydra.utils.get_class(job.data._target_)
            hydra.utils.get_class(job.model._target_)
        if swept:  # the launcher and the sweeper the command selects, built from its hydra.* overrides as Hydra does
            OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
            launcher = Plugins.instance()._instantiate(cfg.hydra.launcher)
            sweeper = Plugins.instance()._instantiate(cfg.hydra.sweeper)
            if "hydra/launcher=slurm" in command.args:
                assert type(launcher).__name__ == "SlurmLauncher"
            if "hydra/launcher=joblib" in command.args:
                assert type(launcher).__name__ == "JoblibLauncher"
            if "hparams_search=fod_optuna" in command.args:
                assert type(sweeper).__name__ == "ContinuingOptunaSweeper" and cfg.hydra.mode == RunMode.MULTIRUN
    finally:
        HydraConfig.instance().cfg = None


# ---------------------------------------------------------------------------------------------------------------
# Slow: the commands run.


@dataclass
class Outcome:
    cwd: Path  # where the command ran
    sweep_dir: Path | None = None  # a multirun's folder
    seconds: float = 0.0


class ReadmeRunner:
    """Runs README commands once each (memoised by text, so that a command another needs runs on demand)."""

    def __init__(self, root: Path):
        self.root = root
        self.data = root / "data"
        self.outcomes: dict[str, Outcome] = {}
        self.failed: set[str] = set()

    def outcome(self, text: str) -> Outcome:
        if text in self.failed:
            pytest.fail(f"{text} failed (above): nothing to use")
        if text not in self.outcomes:
            command = next((c for c in COMMANDS if c.text == text), None)
            assert command is not None, f"{text} is not a README command"
            try:
                self.execute(command)
            except BaseException:
                self.failed.add(text)
                raise
        return self.outcomes[text]

    def execute(self, command: Command) -> Outcome:
        handling = HANDLING[command.text]
        assert isinstance(handling, Run), handling
        cwd = self.root / f"line{command.line}"
        cwd.mkdir(parents=True, exist_ok=True)
        tokens = list(shlex.split(handling.instead)) if handling.instead else list(command.tokens)
        entry, args = entry_of(tokens)
        args = self.prepare(command, handling, entry, args, cwd)
        start = time.perf_counter()
        outcome = Outcome(cwd)
        if entry == "summarize":
            outcome = self.summarize(command, args)
        elif handling.subprocess:
            env = {k: v for k, v in os.environ.items() if k != "FOD_ROOT"}
            env |= {"WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
            proc = subprocess.run([sys.executable, "-m", f"fod_lightning.{entry}", *args], cwd=cwd, env=env,
                                  capture_output=True, text=True, timeout=600)  # fmt: skip
            assert proc.returncode == 0, f"{command.text}\n{proc.stderr[-4000:]}"
        else:
            in_process(entry, args, cwd)
        outcome.seconds = time.perf_counter() - start
        if entry == "run":
            outcome.sweep_dir = check_run(command, args, cwd)
        self.outcomes[command.text] = outcome
        why = f" ({handling.why})" if handling.why else ""
        print(f"README.md:{command.line} ran in {outcome.seconds:.1f} s{why}: {entry} {' '.join(args)}")
        return outcome

    def prepare(self, command: Command, handling: Run, entry: str, args: list[str], cwd: Path) -> list[str]:
        """The README's arguments as run here: values replaced, data remapped, checkpoints supplied."""
        from helpers.readme_datasets import remap_data_paths

        args = list(args)
        for key, value in handling.set.items():
            where = [i for i, a in enumerate(args) if a.split("=", 1)[0] == key]
            assert len(where) == 1, f"README.md:{command.line}: {key} is not in the command (HANDLING is stale)"
            args[where[0]] = f"{key}={value}"
        args = [remap_data_paths(a, self.data) for a in args]
        if handling.checkpoint_from:
            ckpt = self.checkpoint(handling.checkpoint_from)
            args = [f"ckpt_path={ckpt}" if a.startswith("ckpt_path=") else a for a in args]
        if handling.authors_from:
            self.write_authors_files(handling.authors_from, dict(a.split("=", 1) for a in args if "=" in a), cwd)
        if entry == "run":
            keys = {a.split("=", 1)[0] for a in args}
            assert not keys & {a.split("=", 1)[0] for a in handling.add}, "add: a key the command sets (use set)"
            args += ["debug=fast", *handling.add]
        return args

    def checkpoint(self, text: str, name: str = "last.ckpt") -> Path:
        found = sorted(self.outcome(text).cwd.rglob(f"checkpoints/{name}"))
        assert found, f"{text} left no {name}"
        return found[0]

    def write_authors_files(self, text: str, args: dict, cwd: Path) -> None:
        """The net of ``text``'s checkpoint in the authors' layout, at the command's (relative) paths."""
        import fod_lightning
        from helpers.authors_files import save_authors_files

        pth, pkl = cwd / args["ckpt_path"], cwd / args["reader.reference_features"]
        if pth.exists():
            return
        category = pth.name.removesuffix("-pix.pth").removesuffix("-img.pth")
        staging = cwd / "authors_staging"
        staging.mkdir(exist_ok=True)
        save_authors_files(fod_lightning.load(self.checkpoint(text)).net, staging, category=category)
        for source, target in ((staging / f"{category}-pix.pth", pth), (staging / f"{category}.pkl", pkl)):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(source, target)

    def summarize(self, command: Command, args: list[str]) -> Outcome:
        """On the sweep folder of the nearest multirun above it in README.md that ran here, from its folder."""
        from fod_lightning import summarize

        sweep = self.outcome(multirun_above(command).text)
        args = [str(sweep.sweep_dir) if "<date>" in a else a for a in args]
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(sweep.cwd)
            assert summarize.main(args) == 0
            folder = Path(args[0]).resolve()
        assert folder == sweep.sweep_dir.resolve(), f"{command.text} summarises {folder}, not the sweep above"
        assert (folder / "summary.md").is_file() and (folder / "summary.csv").is_file()
        if "--wandb" in args:
            assert any((folder / "wandb").glob("offline-run-*"))
        return Outcome(sweep.cwd, sweep.sweep_dir)


def in_process(entry: str, args: list[str], cwd: Path) -> None:
    """``python -m fod_lightning.<entry> ARGS`` from ``cwd``, in this process."""
    import importlib

    main = importlib.import_module(f"fod_lightning.{entry}").main
    GlobalHydra.instance().clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        mp.setattr(sys, "argv", [f"fod_lightning.{entry}", *args])
        mp.delenv("FOD_ROOT", raising=False)
        mp.setenv("WANDB_MODE", "offline")
        try:
            main()
        except SystemExit as stop:
            if stop.code not in (0, None):
                pytest.fail(f"fod_lightning.{entry} {' '.join(args)} exited with {stop.code} (its error above)")
        finally:
            GlobalHydra.instance().clear()


def check_run(command: Command, args: list[str], cwd: Path) -> Path | None:
    """Every job of the command finished (``results.json``: done, with metrics); returns a sweep's folder."""
    results = {p: json.loads(p.read_text()) for p in sorted(cwd.rglob("results.json"))}
    assert results, f"{command.text} wrote no results.json under {cwd}"
    for path, doc in results.items():
        assert doc["run"]["status"] == "done", f"{path}: {doc['run'].get('error')}"
        assert doc["categories"], path
        for category, metrics in doc["categories"].items():
            assert "image_auroc" in metrics, (path, category)
    if not is_multirun(command):
        assert len(results) == 1, f"{command.text}: one run expected, got {list(results)}"
        return None
    (sweep,) = {p.parent.parent for p in results}
    jobs = jobs_of([a for a in args if a not in ("-m", "--multirun")])
    trials = next((int(a.split("=")[1]) for a in args if a.startswith("hydra.sweeper.n_trials=")), None)
    assert len(results) == (trials or jobs), f"{command.text}: {len(results)} jobs in {sweep}"
    assert (sweep / "summary.md").is_file(), "the sweep's summary is written when it ends"
    if "logger=wandb" in args:  # every job's W&B run and the sweep's summary run, offline in the sweep folder
        assert len(list(sweep.glob("*/wandb/offline-run-*"))) == len(results) and any(sweep.glob("wandb/offline-run-*"))
    return sweep


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    return ReadmeRunner(tmp_path_factory.mktemp("readme"))


@pytest.mark.slow
@pytest.mark.parametrize("command", with_known_bugs(COMMANDS), ids=command_id)
def test_readme_command_runs(command: Command, runner: ReadmeRunner):
    handling = HANDLING.get(command.text)
    if handling is None:
        pytest.fail(f"README.md:{command.line}: {command.text}: add it to the README test (HANDLING)")
    if isinstance(handling, PathsOnly):  # not run (handling.reason); what it names exists
        check_paths(command, runner.outcome(multirun_above(command).text))
        return
    if not isinstance(handling, Run):
        pytest.skip(f"{type(handling).__name__}: {handling.reason}")
    outcome = runner.outcome(command.text)
    entry, args = entry_of(shlex.split(handling.instead) if handling.instead else command.tokens)
    if entry == "predict":
        check_predictions(outcome.cwd, args, runner.data)
    if entry == "export":
        output = outcome.cwd / dict(a.split("=", 1) for a in args)["output"]
        assert output.is_file() and json.loads(output.with_suffix(".json").read_text())["opset"] == 18


def check_paths(command: Command, sweep: Outcome) -> None:
    """Each path argument naming the sweep folder (``outputs/<task>/multiruns/<date>/...``) matches files there."""
    import glob

    patterns = [
        re.sub(r"^outputs/[^/]+/multiruns/<date>", str(sweep.sweep_dir), a) for a in command.args if "<date>" in a
    ]
    assert patterns, f"{command.text}: no path in the sweep folder"
    for pattern in patterns:
        assert glob.glob(pattern), f"README.md:{command.line}: {pattern} matches nothing the multirun above wrote"


def check_predictions(cwd: Path, args: list[str], data: Path) -> None:
    """One row per image found, each scored; a threshold on the command line labels them."""
    from helpers.readme_datasets import remap_data_paths

    values = dict(a.split("=", 1) for a in args)
    pattern = remap_data_paths(values["input"], data)
    found = sorted(Path(pattern).rglob("*.png")) if Path(pattern).is_dir() else sorted(Path("/").glob(pattern[1:]))
    rows = list(csv.DictReader((cwd / values["output_dir"] / "scores.csv").open()))
    assert sorted(r["image"] for r in rows) == [str(p) for p in found] and found
    assert all(r["score"] and not r["error"] for r in rows)
    if "threshold" in values:
        assert {r["label"] for r in rows} <= {"anomalous", "normal"} and all(r["label"] for r in rows)
