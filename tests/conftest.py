"""Shared fixtures: tiny ViT-MAE / ViT configs, an image-folder factory, a loader of the scripts and examples, and
the localhost Hub server."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import numpy as np
import PIL.Image
import pytest

from tests.helpers import ROOT
from tests.helpers.hub_server import HubServer
from tests.helpers.tiny import tiny_overrides, tiny_vit_config, tiny_vit_mae_config


@pytest.fixture(scope="session")
def vit_mae_config():
    """A factory of tiny `ViTMAEConfig`s: ``vit_mae_config(num_hidden_layers=3, ...)`` overrides `TINY_VIT`."""

    return tiny_vit_mae_config


@pytest.fixture(scope="session")
def vit_config():
    """A factory of tiny `ViTConfig`s (`TINY_VIT` with overrides)."""

    return tiny_vit_config


@pytest.fixture(scope="session")
def config_overrides():
    """``--config_overrides`` text of the tiny ViT-MAE (with ``decoder=False``: of the tiny ViT), plus overrides."""

    return tiny_overrides


def _make_image_folder(root, n_per_class=6, size=20, modes=("RGB", "L", "RGBA", "P"), corrupt=0):
    """Write a tiny two-class image folder with mixed colour modes (and optionally corrupt files)."""
    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            array = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            image = PIL.Image.fromarray(array).convert(modes[i % len(modes)])
            image.save(folder / f"{label}_{i}.png")
        for i in range(corrupt):
            (folder / f"broken_{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return root


@pytest.fixture(scope="session")
def make_image_folder():
    """``make_image_folder(root, n_per_class=6, size=20, modes=..., corrupt=0)``: a two-class image folder."""
    return _make_image_folder


_SCRIPTS: dict[Path, ModuleType] = {}


@pytest.fixture(scope="session")
def load_script():
    """``load_script("scripts/run_eval.py")``: a script or example (path relative to the repository) as a module,
    loaded once per session without running its ``__main__`` block."""

    def load(path: str | os.PathLike) -> ModuleType:
        path = (ROOT / path).resolve()
        if path not in _SCRIPTS:
            spec = importlib.util.spec_from_file_location(f"script_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            _SCRIPTS[path] = module
        return _SCRIPTS[path]

    return load


@pytest.fixture(scope="session")
def _hub_server_session():
    server = HubServer().start()
    yield server
    server.stop()


@pytest.fixture
def hub_server(_hub_server_session: HubServer, monkeypatch, tmp_path_factory):
    """A localhost Hub (see `tests/hub_server.py`) with the real clients pointed at it.

    Sets HF_ENDPOINT, HF_HUB_DISABLE_XET=1, a dummy HF_TOKEN and a private HF_HOME for this test and for the
    subprocesses it starts (they inherit os.environ), and unsets HF_HUB_OFFLINE. Yields the `HubServer`:
    ``.url``, ``.fail_with(status, routes=None)`` / ``.recover()``, ``.stop()`` / ``.start()``, ``.files(repo_id)``.
    """
    server = _hub_server_session
    server.reset()
    server.start()
    home = str(tmp_path_factory.mktemp("hf_home"))
    server.environment = server.point_clients_here(monkeypatch, home)
    yield server
    server.recover()
    server.start()


HIDE_PACKAGES = """
import importlib.machinery, sys
_HIDDEN = {hidden!r}
class _HidingPathFinder(importlib.machinery.PathFinder):
    # The packages in _HIDDEN look uninstalled: find_spec finds nothing, so `import` raises ModuleNotFoundError
    # and availability checks (importlib.util.find_spec) say absent.
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] in _HIDDEN:
            return None
        return super().find_spec(name, path, target)
sys.meta_path = [_HidingPathFinder if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
"""


@pytest.fixture
def hide_packages():
    """``hide_packages(*names)``: Python source that, run first in a fresh interpreter, makes those top-level
    packages look uninstalled (for subprocess tests of optional dependencies)."""
    return lambda *names: HIDE_PACKAGES.format(hidden=set(names))
