"""Entry points: what only the scripts need (argument wiring, the run functions, the reproduction grid, tables).

The top layer of the package: it may import every other module; no library module imports it.
``scripts/*.py`` are thin shims over these modules.
"""

from .parser import MAGMAArgumentParser, setup_logging

__all__ = ["MAGMAArgumentParser", "setup_logging"]
