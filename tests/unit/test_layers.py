"""The package's layers, as docs/architecture.md writes them: imports only go down, no cycles, and the rules of the
matrix below (third-party packages included): no Lightning in the torch models, no models in the data layer, no
model's own module in the generic layers. ``hydra_plugins`` is checked with the launch layer. A test of the test
plants each kind of violation in a copy of the package and sees it reported."""

import ast
import shutil
from pathlib import Path

import pytest

import fod_lightning

SRC = Path(fod_lightning.__file__).parents[1]  # src/: fod_lightning and hydra_plugins
# Lowest first. A module may import from its own layer and the layers below it.
LAYERS = [
    {"errors", "utils"},
    {"models"},
    {"data"},
    {"metrics"},
    {"reporting"},
    {"training"},
    {"deploy"},
    {"engine", "launch", "hydra_plugins"},
    {"run", "predict", "export", "summarize", "bench", "__init__"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
# Each model's own modules: its torch model and its Lightning side. Only its own slice (and the benchmark command,
# which measures FOD) may import them; the plugin entry point is how the generic layers meet them.
SLICES = {
    "fod": ("fod_lightning.models.fod", "fod_lightning.training.fod"),
    "patchcore": ("fod_lightning.models.patchcore", "fod_lightning.training.baselines"),
    "padim": ("fod_lightning.models.padim", "fod_lightning.training.baselines"),
}
MAY_IMPORT_ANY_MODEL = ("fod_lightning.bench",)
# (where, what it must not import, why): ``where`` and ``what`` are module-name prefixes.
FORBIDDEN = [
    ("fod_lightning.models", ("lightning", "hydra", "omegaconf", "wandb", "matplotlib", "albumentations"),
     "the torch models are pure torch: tensors in, scores and maps out"),
    ("fod_lightning.data", ("fod_lightning.models", "wandb"), "the datamodules never know which model runs"),
    ("fod_lightning.metrics", ("lightning", "hydra", "wandb"), "metrics are numbers: torchmetrics, not the trainer"),
    ("fod_lightning.utils", ("lightning", "fod_lightning.models", "fod_lightning.data"), "utils serve every layer"),
    ("fod_lightning.errors", ("fod_lightning", "torch", "lightning"), "the user errors import nothing"),
]  # fmt: skip


def modules(src: Path = SRC) -> dict[str, Path]:
    found = {}
    for package in ("fod_lightning", "hydra_plugins"):
        for path in (src / package).rglob("*.py"):
            parts = path.relative_to(src).with_suffix("").parts
            found[".".join(parts).removesuffix(".__init__")] = path
    return found


def imported(path: Path, module: str, top_level_only: bool = False) -> set[str]:
    """Every module name ``path`` imports, third-party ones included (``from a.b import c`` gives a.b and a.b.c;
    relative imports resolved from ``module``)."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body if top_level_only else ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, one level up per extra dot
                package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join([*package, *([base] if base else [])])
            names |= {base} | {f"{base}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return names


def inside(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer(module: str) -> int:
    parts = module.split(".")
    if parts[0] == "hydra_plugins":
        return RANK["hydra_plugins"]
    return RANK[parts[1]] if len(parts) > 1 else RANK["__init__"]


def slices_of(module: str) -> set[str]:
    return {name for name, prefixes in SLICES.items() if any(inside(module, p) for p in prefixes)}


def violations(src: Path = SRC) -> list[str]:
    """Every import that breaks a written rule, as ``module imports target: rule``."""
    found = modules(src)
    problems = []
    for module, path in found.items():
        for target in sorted(imported(path, module)):
            own = (
                target if target in found else target.rpartition(".")[0] if target.rpartition(".")[0] in found else None
            )
            if own is not None and layer(own) > layer(module):
                problems.append(f"{module} imports {own}: imports only go down")
            theirs = slices_of(target)
            if theirs and not (slices_of(module) & theirs) and not any(inside(module, p) for p in MAY_IMPORT_ANY_MODEL):
                problems.append(f"{module} imports {target}: a model's own module, outside its slice")
            for where, what, why in FORBIDDEN:
                if inside(module, where) and any(inside(target, w) for w in what):
                    problems.append(f"{module} imports {target}: {why}")
    return sorted(set(problems))


def cycles(src: Path = SRC) -> list[str]:
    found = modules(src)
    graph = {m: {t for t in imported(p, m, top_level_only=True) if t in found} - {m} for m, p in found.items()}
    state: dict[str, int] = {}
    loops = []

    def visit(module: str, stack: list[str]) -> None:
        state[module] = 1
        for target in graph.get(module, ()):
            if state.get(target) == 1:
                loops.append(" -> ".join([*stack[stack.index(target) :], target]))
            elif target not in state:
                visit(target, [*stack, target])
        state[module] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])
    return loops


def test_every_module_belongs_to_a_layer():
    assert all(m.startswith("hydra_plugins") or len(m.split(".")) == 1 or m.split(".")[1] in RANK for m in modules())


def test_the_package_keeps_the_written_rules():
    assert violations() == []


def test_no_import_cycles():
    assert cycles() == []


def test_the_package_root_holds_only_entry_points_and_the_face():
    loose = sorted(p.name for p in (SRC / "fod_lightning").glob("*.py"))
    assert loose == ["__init__.py", "errors.py", "export.py", "predict.py", "run.py", "summarize.py"]


PLANTED = {
    "fod_lightning/models/leak_lightning.py": ("import lightning\n", "the torch models are pure torch"),
    "fod_lightning/data/leak_model.py": (
        "from fod_lightning.models.base import AnomalyNet\n",
        "never know which model",
    ),
    "fod_lightning/engine/leak_fod.py": ("from fod_lightning.models.fod.model import FOD\n", "outside its slice"),
    "fod_lightning/deploy/leak_fod_module.py": ("import fod_lightning.training.fod.module\n", "outside its slice"),
    "fod_lightning/training/fod/leak_patchcore.py": (
        "from fod_lightning.models import patchcore\n",
        "outside its slice",
    ),
    "fod_lightning/metrics/leak_upward.py": ("from fod_lightning.training.module import AnomalyModule\n", "go down"),
    "hydra_plugins/fod_lightning_sweeper/leak_up.py": ("from fod_lightning.run import main\n", "go down"),
    "fod_lightning/reporting/leak_relative.py": ("from ..training.fod import module\n", "outside its slice"),
}


@pytest.mark.parametrize("planted", sorted(PLANTED))
def test_the_layer_test_catches_a_planted_violation(tmp_path, planted):
    for package in ("fod_lightning", "hydra_plugins"):
        shutil.copytree(SRC / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    assert violations(tmp_path) == []
    code, rule = PLANTED[planted]
    (tmp_path / planted).write_text(code)
    module = planted.removesuffix(".py").replace("/", ".")
    found = violations(tmp_path)
    assert len(found) >= 1 and all(v.startswith(module) for v in found), found
    assert any(rule in v for v in found), found


def test_a_planted_cycle_is_caught(tmp_path):
    for package in ("fod_lightning", "hydra_plugins"):
        shutil.copytree(SRC / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "fod_lightning/utils/leak_a.py").write_text("from fod_lightning.utils import leak_b\n")
    (tmp_path / "fod_lightning/utils/leak_b.py").write_text("from fod_lightning.utils import leak_a\n")
    assert any("leak_a" in c and "leak_b" in c for c in cycles(tmp_path))
