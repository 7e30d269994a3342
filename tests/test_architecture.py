"""The package's imports go one way (docs/architecture.md): losses -> models -> data -> training ->
evaluation / figures -> entry points. Parsed with `ast`, module-level and function-level imports alike."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import hf_magma

PACKAGE_DIR = Path(hf_magma.__file__).parent

LAYERS = ("losses", "models", "data", "training", "evaluation / figures", "entry points")

#: Each module's layer (a package's modules by its prefix). A new module must be placed here.
MODULE_LAYERS = {
    "hf_magma.checks": "losses",
    "hf_magma.losses": "losses",
    "hf_magma.ssl_objectives": "losses",
    "hf_magma.modeling": "models",
    "hf_magma.modeling_ssl": "models",
    "hf_magma.model_config": "models",
    "hf_magma.export": "models",
    "hf_magma.data": "data",
    "hf_magma.fashion_mnist": "data",
    "hf_magma.crop": "data",
    "hf_magma.transforms": "data",
    "hf_magma.in_memory": "data",
    "hf_magma.augmentation": "data",
    "hf_magma.labels": "data",
    "hf_magma.logged_metrics": "training",
    "hf_magma.figure_options": "training",
    "hf_magma.integrations": "training",
    "hf_magma.training_args": "training",
    "hf_magma.trainer_state": "training",
    "hf_magma.card_results": "training",
    "hf_magma.model_card": "training",
    "hf_magma.hub": "training",
    "hf_magma.run_guard": "training",
    "hf_magma.trainer": "training",
    "hf_magma.encoders": "evaluation / figures",
    "hf_magma.evaluation": "evaluation / figures",
    "hf_magma.visualize": "evaluation / figures",
    "hf_magma.cli": "entry points",
    "hf_magma.commands": "entry points",
    "hf_magma": "entry points",
}
#: Siblings of one layer that must not import each other; the layer's other modules (encoders) import neither.
SIBLINGS = ("hf_magma.evaluation", "hf_magma.visualize")


def module_names(package_dir: Path) -> dict[str, Path]:
    """``{dotted module name: file}`` for every module of the package (``__init__`` files named by their package)."""
    names = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imports_of(name: str, path: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its file (also inside functions)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source for alias in node.names]
        else:
            continue
        found.update(target for target in targets if target in modules and target != name)
    return found


def layer_of(name: str) -> str:
    """The layer of a module: its own entry, else its package's."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in MODULE_LAYERS:
            return MODULE_LAYERS[prefix]
    raise KeyError(name)


def sibling_of(name: str) -> str | None:
    return next((s for s in SIBLINGS if name == s or name.startswith(s + ".")), None)


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    modules = module_names(package_dir)
    return {name: imports_of(name, path, set(modules)) for name, path in modules.items()}


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a higher layer, or of a sibling, as ``"a (layer) imports b (layer)"``."""
    problems = []
    for name, targets in sorted(graph.items()):
        for target in sorted(targets):
            here, there = LAYERS.index(layer_of(name)), LAYERS.index(layer_of(target))
            upward = there > here
            across = here == there and sibling_of(target) is not None and sibling_of(name) != sibling_of(target)
            if upward or across:
                problems.append(f"{name} ({layer_of(name)}) imports {target} ({layer_of(target)})")
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles (each as the list of modules around it), found by depth-first search."""
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                found.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_every_module_has_a_layer():
    unplaced = []
    for name in module_names(PACKAGE_DIR):
        try:
            layer_of(name)
        except KeyError:
            unplaced.append(name)
    assert not unplaced, f"place these modules in MODULE_LAYERS and docs/architecture.md: {unplaced}"


def test_imports_go_one_way_without_cycles():
    graph = import_graph(PACKAGE_DIR)
    assert layering_violations(graph) == []
    assert cycles(graph) == []


def test_the_checks_catch_planted_violations(tmp_path):
    package = tmp_path / "hf_magma"
    shutil.copytree(PACKAGE_DIR, package, ignore=shutil.ignore_patterns("__pycache__"))
    clean = import_graph(package)
    assert layering_violations(clean) == [] and cycles(clean) == []

    losses = package / "losses.py"
    losses.write_text(losses.read_text() + "\n\ndef _late():\n    from .cli import evaluation\n")
    (package / "evaluation" / "knn.py").write_text(
        (package / "evaluation" / "knn.py").read_text() + "\nfrom ..visualize import curves\n"
    )
    graph = import_graph(package)
    assert layering_violations(graph) == [
        "hf_magma.evaluation.knn (evaluation / figures) imports hf_magma.visualize.curves (evaluation / figures)",
        "hf_magma.losses (losses) imports hf_magma.cli.evaluation (entry points)",
    ]
    # losses -> cli.evaluation -> ... -> losses
    assert any(cycle[0] == cycle[-1] and "hf_magma.losses" in cycle for cycle in cycles(graph))


def test_training_imports_no_plotting_package():
    code = (
        "import sys, hf_magma.trainer, hf_magma.training_args, hf_magma.cli.pretraining; "
        "print('matplotlib' in sys.modules, 'pacmap' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]
