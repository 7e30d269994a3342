"""The command-line programs: each module's `main` and `make_parser` back a `scripts/<name>.py` file and a console
command installed with the package (`entry_point`):

| script | command |
|---|---|
| `scripts/run_mae_magma.py` | `hf-magma-pretrain` |
| `scripts/run_ssl_magma.py` | `hf-magma-pretrain-ssl` |
| `scripts/run_eval.py` | `hf-magma-eval` |
| `scripts/reproduce.py` | `hf-magma-reproduce` |
| `scripts/visualize.py` | `hf-magma-visualize` |
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any


def script_parser(dataclass_types: Sequence[type], doc: str | None) -> Any:
    """A command's `MAGMAArgumentParser` (with ``--config``): its dataclasses, its module docstring (the examples)
    as the description."""
    from ..cli import MAGMAArgumentParser

    return MAGMAArgumentParser(dataclass_types, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
