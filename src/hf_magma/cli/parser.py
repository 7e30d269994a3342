"""What the programs share: `MAGMAArgumentParser` (`HfArgumentParser` that also reads a YAML ``--config FILE``, the
command line overriding it), `setup_logging`, and `run_program`, which turns a refusal into one ``error: ...`` line."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

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


#: The exception types of a refusal: raised by hf-magma's own checks with a message that names the setting, file or
#: value and the fix. The same types raised elsewhere (in torch, transformers, ...) are unexpected errors.
REFUSAL_TYPES = (ValueError, TypeError, OSError, ImportError)
#: A refusal's exit status (argparse's, for a command line it refuses).
REFUSAL_EXIT_STATUS = 2
#: How long a process other than the main one waits before it says its refusal (see `refuse`).
OTHER_PROCESS_WAIT_S = 10.0
#: The flag that shows a refusal's traceback.
SHOW_TRACEBACK = "--show_traceback"
_PACKAGE_DIR = Path(__file__).resolve().parents[1]


def debug_requested(argv: Sequence[str] | None = None) -> bool:
    """Whether ``--show_traceback`` is on the command line or ``HF_MAGMA_DEBUG`` is set (to anything but ``0`` or
    empty). (``--debug`` is transformers' own `TrainingArguments` option, for other things.)"""
    argv = sys.argv[1:] if argv is None else argv
    return SHOW_TRACEBACK in argv or os.environ.get("HF_MAGMA_DEBUG", "0") not in ("", "0")


def is_refusal(error: BaseException) -> bool:
    """Whether ``error`` is one of hf-magma's refusals: one of `REFUSAL_TYPES`, raised by a ``raise`` in hf-magma's
    own code (the innermost frame of its traceback is in the package)."""
    if not isinstance(error, REFUSAL_TYPES) or error.__traceback__ is None:
        return False
    traceback = error.__traceback__
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    return Path(traceback.tb_frame.f_code.co_filename).resolve().is_relative_to(_PACKAGE_DIR)


def refuse(error: BaseException) -> NoReturn:
    """Print ``error: <message>`` to stderr and exit with `REFUSAL_EXIT_STATUS`.

    Under ``torchrun`` / ``accelerate launch`` every process usually meets the same refusal: the main process says it
    at once, the others wait `OTHER_PROCESS_WAIT_S` first, so the launcher, seeing the main process end, stops them
    before they repeat it. A refusal that only another process meets is still said, as ``error (process N): ...``.
    """
    rank = int(os.environ.get("RANK", "0"))
    if rank != 0:
        time.sleep(OTHER_PROCESS_WAIT_S)
    message = " ".join(str(error).split()) or type(error).__name__
    print(f"error: {message}" if rank == 0 else f"error (process {rank}): {message}", file=sys.stderr, flush=True)
    sys.exit(REFUSAL_EXIT_STATUS)


def run_program(program: Callable[[], Any]) -> Any:
    """Run a program's ``main`` (``program`` parses its own arguments): a refusal (`is_refusal`) ends it with one
    ``error: ...`` line and exit status 2, without a traceback; ``--show_traceback`` or ``HF_MAGMA_DEBUG=1`` gives the
    traceback instead. Unexpected errors keep their traceback.

    Args:
        program: A callable of no arguments, e.g. ``lambda: main(*make_parser().parse_args_and_config())``.

    Returns:
        What ``program`` returns.
    """
    try:
        return program()
    except REFUSAL_TYPES as error:
        if debug_requested() or not is_refusal(error):
            raise
        refuse(error)


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
        self.add_argument(
            SHOW_TRACEBACK,
            action="store_true",
            help="Show the Python traceback of a refusal instead of its one 'error: ...' line (as HF_MAGMA_DEBUG=1).",
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
            elif arg != SHOW_TRACEBACK:
                remaining.append(arg)
            index += 1
        if config_path is not None:
            self.set_defaults(**self._read_config(config_path))
        outputs = self.parse_args_into_dataclasses(args=remaining, look_for_args_file=False)
        # The --config and --show_traceback entries are left in an extra namespace; it is not one of the dataclasses.
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
