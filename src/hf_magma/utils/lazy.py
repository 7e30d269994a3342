"""Lazy re-exports for the package's ``__init__`` files (as transformers and TRL do): a name is imported from its
module on first use, so importing the loss does not import the data stack, and optional extras are needed only
by what uses them."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_exports(
    package: str,
    exports: Mapping[str, Sequence[str]],
    moved: Mapping[str, str] | None = None,
    loaded: Mapping[str, Any] | None = None,
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """The ``__getattr__``, ``__dir__`` and ``__all__`` of a package that re-exports its modules' public names.

    Args:
        package: the package's ``__name__``.
        exports: ``{module (relative to the package, e.g. "magma"): names it exports}``.
        moved: ``{old name: "module.path"}`` of names that used to be exported here: they still resolve, with a
            ``FutureWarning`` that names the new import.
        loaded: the package's ``globals()``, where a resolved name is cached.

    Returns:
        ``(__getattr__, __dir__, __all__)``; ``__all__`` is sorted.
    """
    module_of = {name: module for module, names in exports.items() for name in names}
    moved = dict(moved or {})
    cache = loaded if loaded is not None else {}
    public = sorted(module_of)

    def __getattr__(name: str) -> Any:
        if name in module_of:
            value = getattr(importlib.import_module(f".{module_of[name]}", package), name)
            cache[name] = value
            return value
        if name in moved:
            warnings.warn(
                f"`{package}.{name}` moved: import it with `from {moved[name]} import {name}` "
                f"(the old name goes away in the next release)",
                FutureWarning,
                stacklevel=2,
            )
            return getattr(importlib.import_module(moved[name]), name)
        submodules = {module.split(".")[0] for module in exports}
        if name in submodules:
            return importlib.import_module(f".{name}", package)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(cache) | set(public))

    return __getattr__, __dir__, public
