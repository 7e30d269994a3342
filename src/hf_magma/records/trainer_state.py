"""Reading what `transformers.Trainer` leaves in a run folder: the newest complete ``checkpoint-N`` and the
``trainer_state.json`` with its ``log_history``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

TRAINER_STATE_NAME = "trainer_state.json"


def checkpoint_folders(output_dir: str | os.PathLike) -> list[tuple[int, str]]:
    """``(N, path)`` of every ``checkpoint-N`` folder in ``output_dir``, lowest N first (none without the folder)."""
    if not os.path.isdir(output_dir):
        return []
    found = []
    for name in os.listdir(output_dir):
        prefix, _, number = name.partition("-")
        folder = os.path.join(output_dir, name)
        if prefix == "checkpoint" and number.isdigit() and os.path.isdir(folder):
            found.append((int(number), folder))
    return sorted(found)


def read_trainer_state(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The parsed ``trainer_state.json`` of a checkpoint folder, or None when it is absent or not whole (a kill can
    leave it half-written: the Trainer writes it in place, last in a checkpoint)."""
    try:
        with open(os.path.join(folder, TRAINER_STATE_NAME), encoding="utf-8") as handle:
            state = json.load(handle)
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def last_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest complete ``checkpoint-N`` folder in ``output_dir`` (its ``trainer_state.json`` written), or None.

    A run killed while saving leaves a partial folder behind; resuming skips it and takes the one before.
    """
    complete = [folder for _, folder in checkpoint_folders(output_dir) if read_trainer_state(folder) is not None]
    return complete[-1] if complete else None


def find_trainer_state(path: str | os.PathLike) -> Path:
    """The ``trainer_state.json`` of a run: the file itself, the one in a directory, or that of its last complete
    checkpoint."""
    path = Path(path)
    if path.is_file():
        return path
    if (path / TRAINER_STATE_NAME).is_file():
        return path / TRAINER_STATE_NAME
    checkpoint = last_checkpoint(path)
    if checkpoint is not None:
        return Path(checkpoint) / TRAINER_STATE_NAME
    raise FileNotFoundError(f"No trainer_state.json in {str(path)!r} or in its checkpoint-* folders")


def load_log_history(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The ``log_history`` list that `transformers.Trainer` saved in a run's ``trainer_state.json`` (a run folder,
    a checkpoint folder or the file)."""
    state_path = find_trainer_state(path)
    with open(state_path) as f:
        state = json.load(f)
    history = state.get("log_history") if isinstance(state, dict) else None
    if not isinstance(history, list):
        raise ValueError(f"{str(state_path)!r} has no `log_history` list; is it a transformers trainer_state.json?")
    return history
