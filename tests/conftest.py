"""Shared fixtures."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from hub_server import HubServer  # noqa: E402


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


@pytest.fixture
def tiny_mae_config():
    """``tiny_mae_config(**overrides)``: a ViT-MAE config of 2 blocks x 32 wide on 16 px images in 4 px patches
    (16 patches) with a 1-block, 16-wide decoder."""
    from transformers import ViTMAEConfig

    def make(**overrides):
        settings = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        image_size=16, patch_size=4, decoder_hidden_size=16, decoder_num_hidden_layers=1,
                        decoder_num_attention_heads=2, decoder_intermediate_size=32)
        return ViTMAEConfig(**{**settings, **overrides})

    return make
