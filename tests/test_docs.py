"""The README and docs as a reader uses them: the Python quick start runs as written, and every hf-magma import and
name they show exists where they say, without a deprecation warning."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from tests.helpers import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def python_blocks(doc: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)


def import_statements(code: str) -> list[str]:
    """The ``from hf_magma... import ...`` statements of ``code`` (parenthesised ones joined on one line)."""
    statements = re.findall(r"^(from hf_magma[\w.]* import (?:\([^)]*\)|[^\n]+))", code, re.M)
    return [" ".join(statement.split()) for statement in statements]


def resolve(dotted: str) -> object:
    """The object ``hf_magma.a.b.c`` names: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:end]))
        except ModuleNotFoundError:
            continue
        for name in parts[end:]:
            value = getattr(value, name)
        return value
    raise ModuleNotFoundError(dotted)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_import_and_name_shown_exists_without_a_deprecation(doc):
    statements = [s for block in python_blocks(doc) for s in import_statements(block)]
    text = doc.read_text()
    if doc.name == "architecture.md":  # its last section lists the 0.1 paths that moved
        text = text.split("## Moved in 0.2")[0]
    names = set(re.findall(r"`(hf_magma(?:\.\w+)+)", text))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        for statement in statements:
            exec(statement.replace("(", "").replace(")", ""), {})
        missing = []
        for name in sorted(names):
            try:
                resolve(name)
            except (ImportError, AttributeError):
                missing.append(name)
    assert not missing, f"{doc.name} names what does not exist: {missing}"


def test_the_readme_quick_start_runs_as_written(tmp_path):
    """Both Python blocks of the README's quick start, in a fresh process, in a folder holding the `photos/train`
    class folders the second one trains on; the checkpoint it saves serves features through `AutoModel`."""
    blocks = [block for block in python_blocks(ROOT / "README.md") if "hf_magma" in block and "pipeline(" not in block]
    assert len(blocks) == 2 and "MAGMATrainer(" in blocks[1]
    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        folder = tmp_path / "photos" / "train" / label
        folder.mkdir(parents=True)
        for index in range(16):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            PIL.Image.fromarray(pixels).save(folder / f"{index}.png")
    check = textwrap.dedent("""
        from transformers import AutoModel
        encoder = AutoModel.from_pretrained("m-mae-photos", subfolder="encoder")
        assert type(encoder).__name__ == "ViTModel", type(encoder)
        print("OK", trainer.state.global_step)
    """)
    script = tmp_path / "quickstart.py"
    script.write_text("\n".join(blocks) + "\n" + check)
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "OK 10" in result.stdout, result.stdout[-2000:]
