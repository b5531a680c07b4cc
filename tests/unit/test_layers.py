"""The package's layers: imports only go down, and no module imports itself back through a cycle."""

import ast
from pathlib import Path

import fod_lightning

PACKAGE = Path(fod_lightning.__file__).parent
# Lowest first. A module may import from its own layer and the layers below it.
LAYERS = [
    {"errors", "utils"},
    {"models"},
    {"data"},
    {"metrics"},
    {"reporting"},
    {"training"},
    {"deploy"},
    {"engine", "launch"},
    {"run", "predict", "export", "summarize", "bench", "__init__"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        found[".".join(("fod_lightning", *parts)).removesuffix(".__init__")] = path
    return found


def imports(path: Path, top_level_only: bool = False) -> set[str]:
    """The fod_lightning modules ``path`` imports (anywhere in it, or at module level only)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    names = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fod_lightning"):
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("fod_lightning")}
    return {n for n in names if n in modules()} | set()


def layer(module: str) -> int:
    parts = module.split(".")
    return RANK[parts[1]] if len(parts) > 1 else RANK["__init__"]


def test_every_module_belongs_to_a_layer():
    assert all(len(m.split(".")) == 1 or m.split(".")[1] in RANK for m in modules())


def test_imports_only_go_down():
    upward = [f"{module} imports {target}" for module, path in modules().items() for target in imports(path)
              if layer(target) > layer(module)]  # fmt: skip
    assert upward == []


def test_no_import_cycles():
    graph = {module: imports(path, top_level_only=True) - {module} for module, path in modules().items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(module: str, stack: list[str]) -> None:
        state[module] = 1
        for target in graph.get(module, ()):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*stack[stack.index(target) :], target]))
            elif target not in state:
                visit(target, [*stack, target])
        state[module] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_package_root_holds_only_entry_points_and_the_face():
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert loose == ["__init__.py", "errors.py", "export.py", "predict.py", "run.py", "summarize.py"]
