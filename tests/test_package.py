"""The package as users get it: license, dependencies and extras, console commands and their help, doc links."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

tomllib = pytest.importorskip("tomllib")

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def names(requirements):
    return {re.split(r"[<>=!~\[ ;]", requirement)[0].lower() for requirement in requirements}


def test_apache_license_file():
    text = (ROOT / "LICENSE").read_text()
    assert text.strip().startswith("Apache License") and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and "APPENDIX: How to apply the Apache License" in text
    assert PROJECT["license"] == "Apache-2.0" and PROJECT["license-files"] == ["LICENSE"]


def test_dependencies_and_extras():
    core = names(PROJECT["dependencies"])
    extras = {extra: names(requirements) for extra, requirements in PROJECT["optional-dependencies"].items()}
    assert not core & {"evaluate", "kornia", "scikit-learn", "matplotlib", "pacmap", "tensorboard"}
    assert "tensorboard" in extras["tensorboard"] and "kornia" in extras["ssl"]
    assert {"matplotlib", "pacmap", "scikit-learn"} <= extras["viz"]
    # The GPU user's one extra runs every recipe as written (trackers, SimCLR / VICReg, figures during training).
    assert extras["tensorboard"] | extras["ssl"] | {"matplotlib"} <= extras["train"]
    others = set().union(*(packages for extra, packages in extras.items() if extra != "test"))
    assert others | {"pytest"} <= extras["test"]  # the README's test command pulls everything the tests use
    assert any(c.startswith("License") is False and "Python :: 3" in c for c in PROJECT["classifiers"])
    assert PROJECT["urls"]["Paper"].startswith("https://arxiv.org/")


def test_console_commands_show_help_with_real_recipe_paths():
    scripts = PROJECT["scripts"]
    assert {target.split(":")[0].rsplit(".", 1)[1] for target in scripts.values()} == {
        path.stem for path in (ROOT / "scripts").glob("*.py")}  # one command per script
    code = "import importlib, sys\n"
    for command, target in scripts.items():
        module, function = target.split(":")
        code += (f"sys.argv = [{command!r}, '--help']\nprint('=== {command}')\n"
                 f"try:\n    getattr(importlib.import_module({module!r}), {function!r})()\n"
                 "except SystemExit as exit:\n    assert exit.code == 0, exit.code\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin", "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr[-3000:]
    helps = dict(re.findall(r"=== (\S+)\n(.*?)(?==== |\Z)", result.stdout, re.S))
    assert set(helps) == set(scripts)
    for command, text in helps.items():
        assert f"usage: {command}" in text and "Examples:" in text, command
    mentioned = set(re.findall(r"recipes/[\w/.-]+\.yaml", result.stdout))
    assert mentioned, "no recipe named in the help texts"
    assert not {path for path in mentioned if not (ROOT / path).is_file()}


def test_script_files_still_run():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "run_eval.py"), "--help"], capture_output=True,
                            text=True, timeout=300, env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0 and "--model_name_or_path" in result.stdout, result.stderr[-2000:]


def heading_anchors(doc: Path) -> set[str]:
    """The anchors GitHub gives a Markdown file's headings (lower case, punctuation dropped, spaces to dashes)."""
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", text, re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_and_paths_in_docs_resolve(doc):
    text = doc.read_text()
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = doc.parent / path if path else doc
        if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked)):
            broken.append(target)
    for path in re.findall(r"(?<![\w/.-])((?:recipes|scripts|examples|benchmarks)/[\w/.-]+\.(?:yaml|py|sh))", text):
        if not (ROOT / path).exists():
            broken.append(path)
    assert not broken, f"{doc.name}: {broken}"


def test_ci_runs_the_linter_then_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    test_command = re.search(r"# 2\. Set up and run the tests\n(.+)\n", readme).group(1)
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1] == test_command
    assert any("ruff check ." in line for line in ci[:-1])
    assert (ROOT / "scripts" / "demo.sh").is_file() and "bash scripts/demo.sh" in readme.split("# 2.")[0]
