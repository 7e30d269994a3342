"""What the scripts share: `MAGMAArgumentParser` (`HfArgumentParser` that also reads a YAML ``--config FILE``, the
command line overriding it) and `setup_logging`."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import transformers
import yaml
from transformers import HfArgumentParser


def setup_logging(logger_name: str, log_level: int, library_level: int | None = None) -> None:
    """Log to stdout with timestamps; ``logger_name`` (the script's) and hf_magma log at ``log_level`` (e.g.
    ``TrainingArguments.get_process_log_level()``, quieter on non-main processes), datasets and transformers at
    ``library_level`` (default: the same). Other libraries stay at warnings."""
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    for name in (logger_name, "hf_magma"):
        logging.getLogger(name).setLevel(log_level)
    datasets.utils.logging.set_verbosity(log_level if library_level is None else library_level)
    transformers.utils.logging.set_verbosity(log_level if library_level is None else library_level)


class MAGMAArgumentParser(HfArgumentParser):
    """Parse dataclasses from the command line, with a YAML ``--config FILE`` (a flat mapping of option names to
    values) supplying defaults that command-line flags override."""

    def __init__(self, dataclass_types, **kwargs) -> None:
        super().__init__(dataclass_types, **kwargs)
        self.add_argument(
            "--config",
            type=str,
            default=None,
            help="A YAML file of option: value pairs (e.g. a recipe in recipes/); flags on the command line win.",
        )

    def parse_args_and_config(self, args: Sequence[str] | None = None) -> tuple[Any, ...]:
        """The dataclasses, built from the YAML config (if ``--config`` is given) updated by the other flags."""
        args = list(sys.argv[1:] if args is None else args)
        config_path = None
        remaining: list[str] = []
        index = 0
        while index < len(args):
            arg = args[index]
            if arg == "--config":
                if index + 1 >= len(args):
                    raise ValueError("--config needs a file name")
                config_path, index = args[index + 1], index + 2
                continue
            if arg.startswith("--config="):
                config_path = arg.split("=", 1)[1]
            else:
                remaining.append(arg)
            index += 1
        if config_path is not None:
            self.set_defaults(**self._read_config(config_path))
        outputs = self.parse_args_into_dataclasses(args=remaining, look_for_args_file=False)
        # The --config entry is left in an extra namespace; it is not one of the dataclasses.
        return tuple(o for o in outputs if not type(o).__name__ == "Namespace")

    def _read_config(self, path: str) -> dict[str, Any]:
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"--config file {path} does not exist")
        with file.open() as f:
            values = yaml.safe_load(f) or {}
        if not isinstance(values, dict):
            raise ValueError(f"--config file {path} must hold a mapping of option names to values")
        known = {action.dest for action in self._actions}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"--config file {path} has unknown options: {', '.join(unknown)}")
        for action in self._actions:
            if action.dest in values:
                action.required = False
        return values
