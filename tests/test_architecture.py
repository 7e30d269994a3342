"""The package's layers are its folders, and imports go one way (docs/architecture.md):

    utils -> losses -> models -> data -> records -> training -> encoders -> evaluation | visualize -> (root) -> cli

Parsed with `ast`, module-level and function-level imports alike (the lazy re-exports' TYPE_CHECKING imports too)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import hf_magma

PACKAGE_DIR = Path(hf_magma.__file__).parent

#: The layers, lowest first; a module's layer is its folder's. The root ``__init__`` is the public API, below the
#: programs: it re-exports from the library and never from `cli`.
LAYERS = ("utils", "losses", "models", "data", "records", "training", "encoders", "evaluation / visualize",
          "public API", "cli")
FOLDER_LAYERS = {
    "utils": "utils",
    "losses": "losses",
    "models": "models",
    "data": "data",
    "records": "records",
    "training": "training",
    "encoders": "encoders",
    "evaluation": "evaluation / visualize",
    "visualize": "evaluation / visualize",
    "cli": "cli",
}
#: Siblings of one layer that must not import each other.
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
            targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                       for alias in node.names]
        else:
            continue
        found.update(target for target in targets if target in modules and target != name)
    return found


def layer_of(name: str) -> str:
    """The layer of a module: its top folder's (the root ``__init__`` is the public API)."""
    if name == "hf_magma":
        return "public API"
    return FOLDER_LAYERS[name.split(".")[1]]


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


def test_every_module_lives_in_a_layer_folder():
    unplaced = [name for name in module_names(PACKAGE_DIR)
                if name != "hf_magma" and name.split(".")[1] not in FOLDER_LAYERS]
    assert not unplaced, f"put these modules in a layer's folder (FOLDER_LAYERS, docs/architecture.md): {unplaced}"
    assert sorted(path.name for path in PACKAGE_DIR.iterdir() if path.suffix == ".py") == ["__init__.py"]
    folders = {path.name for path in PACKAGE_DIR.iterdir() if path.is_dir() and (path / "__init__.py").is_file()}
    assert folders == set(FOLDER_LAYERS)


def test_no_module_is_longer_than_450_lines():
    long = {name: n for name, path in module_names(PACKAGE_DIR).items()
            if (n := len(path.read_text().splitlines())) > 450}
    assert not long, f"split these modules: {long}"


def test_the_root_re_exports_from_the_library_only():
    graph = import_graph(PACKAGE_DIR)
    assert graph["hf_magma"] and not any(target.startswith("hf_magma.cli") for target in graph["hf_magma"])


def test_imports_go_one_way_without_cycles():
    graph = import_graph(PACKAGE_DIR)
    assert layering_violations(graph) == []
    assert cycles(graph) == []


def test_the_checks_catch_planted_violations(tmp_path):
    package = tmp_path / "hf_magma"
    shutil.copytree(PACKAGE_DIR, package, ignore=shutil.ignore_patterns("__pycache__"))
    clean = import_graph(package)
    assert layering_violations(clean) == [] and cycles(clean) == []

    losses = package / "losses" / "magma.py"
    losses.write_text(losses.read_text() + "\n\ndef _late():\n    from ..cli import run_eval\n")
    (package / "evaluation" / "knn.py").write_text(
        (package / "evaluation" / "knn.py").read_text() + "\nfrom ..visualize import curves\n"
    )
    graph = import_graph(package)
    assert layering_violations(graph) == [
        "hf_magma.evaluation.knn (evaluation / visualize) imports hf_magma.visualize.curves (evaluation / visualize)",
        "hf_magma.losses.magma (losses) imports hf_magma.cli.run_eval (cli)",
    ]
    # losses.magma -> cli.run_eval -> ... -> losses.magma
    assert any(cycle[0] == cycle[-1] and "hf_magma.losses.magma" in cycle for cycle in cycles(graph))


def test_training_imports_no_plotting_package():
    code = (
        "import sys, hf_magma.training.trainer, hf_magma.training.training_args, hf_magma.cli.run_mae_magma; "
        "print('matplotlib' in sys.modules, 'pacmap' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]
