"""Test harness: scripts/run_mae_magma.py's run, killing its own process with SIGKILL at a chosen point.

    python -m tests.helpers.kill_worker POINT [run_mae_magma.py options]

or `run` as the target of a process forked from a forkserver that imported this module (no import cost per run).

POINT is ``step:N`` (right after optimizer step N, before that step is logged or saved), ``saved:N`` (right
after checkpoint-N is complete), ``save:N`` (in the middle
of saving checkpoint-N: its weights, config and probe state written, its optimizer, scheduler, RNG and trainer
state not) or ``none``. The hooks live here, in this process only: a callback passed to `pretrain`, and the model
instance's own ``save_pretrained``.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
from pathlib import Path

from transformers import TrainerCallback

from hf_magma.cli.run_mae_magma import prepare_run, pretrain
from hf_magma.models.arguments import load_model_and_image_processor
from tests.helpers import ROOT

SCRIPT = ROOT / "scripts" / "run_mae_magma.py"


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class KillAfterStep(TrainerCallback):
    def __init__(self, step: int, saved: bool = False) -> None:
        self.step = step
        self.saved = saved

    def on_step_end(self, args, state, control, **kwargs):
        if not self.saved and state.global_step == self.step:
            die()

    def on_save(self, args, state, control, **kwargs):
        if self.saved and state.global_step == self.step:
            die()


def kill_while_saving(model, step: int) -> None:
    save = model.save_pretrained

    def save_then_die(save_directory, *args, **kwargs):
        save(save_directory, *args, **kwargs)
        if Path(save_directory).name == f"checkpoint-{step}":
            die()

    model.save_pretrained = save_then_die


def run(point: str, argv: list[str], log_path: str | None = None) -> None:
    """`main` in a fresh single-threaded child process, its output (fd 1 and 2) written to ``log_path``."""
    import torch

    torch.set_num_threads(1)
    if log_path is not None:
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 (the process ends with the run)
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
    main(point, argv)
    sys.stdout.flush()
    sys.stderr.flush()


def main(point: str, argv: list[str]) -> None:
    spec = importlib.util.spec_from_file_location("run_mae_magma", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    data_args, training_args, model_args = script.make_parser().parse_args_and_config(argv)
    resume = prepare_run(data_args, training_args, "run_mae_magma")
    model, image_processor = load_model_and_image_processor(model_args)
    kind, _, number = point.partition(":")
    callbacks = []
    if kind in ("step", "saved"):
        callbacks.append(KillAfterStep(int(number), saved=kind == "saved"))
    elif kind == "save":
        kill_while_saving(model, int(number))
    elif kind != "none":
        raise SystemExit(f"unknown kill point {point!r}: use step:N, save:N or none")
    pretrain(data_args, training_args, model, image_processor, resume=resume,
             base_model=model_args.model_name_or_path, tags=("mae", "magma"), callbacks=callbacks)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
