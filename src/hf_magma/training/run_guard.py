"""What a run may do to its output folder: which folders it may write into, which checkpoints it may delete, and
whether a checkpoint may be resumed with the present settings.

A run writes ``hf_magma_run.json`` (`RUN_MARKER`) into its output folder before anything else, and a copy into
every checkpoint folder it saves. The marker names the run series (an id shared by a run and the runs that resume
it) and the settings that define the run (model config, data source, MAGMA/U-MAE schedule, seed):

- a non-empty output folder without the marker holds no run of this project: it is refused, never written into;
- checkpoint rotation (``save_total_limit``) deletes only ``checkpoint-N`` folders whose marker names this series;
- a ``checkpoint-N`` folder of another series (or of the user) that the run could save into is refused;
- a checkpoint whose settings differ from the present ones is not resumed unless the user says so.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import uuid
from collections.abc import Mapping
from typing import Any

from ..records.trainer_state import checkpoint_folders, last_checkpoint, read_trainer_state
from .run_lock import LOCK_FILE, acquire_output_lock, release_output_lock
from .run_settings import (
    KEPT_FROM_CHECKPOINT,
    model_note,
    resume_mismatch_message,
    run_settings,
    settings_differences,
)

logger = logging.getLogger(__name__)

RUN_MARKER = "hf_magma_run.json"
__all__ = ["RUN_MARKER", "RunGuardMixin", "check_foreign_checkpoints", "check_output_dir", "own_checkpoints",
           "partial_checkpoints", "read_marker", "rotate_own_checkpoints", "run_settings", "settings_differences",
           "write_marker"]
def read_marker(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The run marker of ``folder`` (an output or checkpoint folder), or None when it has none or it is unreadable."""
    try:
        with open(os.path.join(folder, RUN_MARKER), encoding="utf-8") as handle:
            marker = json.load(handle)
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and "series" in marker else None


def write_marker(folder: str | os.PathLike, marker: Mapping[str, Any]) -> None:
    """Write ``marker`` into ``folder`` atomically (a kill leaves the old file or the new one, never half of one);
    a marker already there with the same content is left as it is."""
    if read_marker(folder) == json.loads(json.dumps(dict(marker))):
        return
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, RUN_MARKER)
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(marker, handle, indent=2, sort_keys=True)
    os.replace(temporary, path)


def new_marker(settings: Mapping[str, Any]) -> dict[str, Any]:
    """A marker for a new run series with these settings."""
    return {"project": "hf-magma", "series": uuid.uuid4().hex, "settings": dict(settings)}


def check_output_dir(output_dir: str | os.PathLike) -> dict[str, Any] | None:
    """Refuse an output folder that is not empty and holds no run of this project; returns its marker, if any.

    Raises:
        FileExistsError: naming the folder, a few of its entries, and how to proceed.
    """
    if not os.path.isdir(output_dir):
        if os.path.exists(output_dir):
            raise FileExistsError(f"--output_dir {output_dir} exists and is not a folder: choose another path")
        return None
    marker = read_marker(output_dir)
    if marker is not None:
        return marker
    entries = sorted(name for name in os.listdir(output_dir)
                     if not name.startswith(f"{RUN_MARKER}.") and name != LOCK_FILE)
    if entries:
        shown = ", ".join(entries[:8]) + (", ..." if len(entries) > 8 else "")
        raise FileExistsError(
            f"--output_dir {output_dir} is not empty ({shown}) and holds no hf-magma run (no {RUN_MARKER}): a run "
            "would overwrite files and delete checkpoint-* folders it did not write. Give a new or empty folder as "
            "--output_dir (to continue from a checkpoint in it, also pass --resume_from_checkpoint PATH), or move "
            "those files away."
        )
    return None


def own_checkpoints(output_dir: str | os.PathLike, series: str) -> list[str]:
    """The ``checkpoint-N`` folders of ``output_dir`` written by run series ``series``, oldest (lowest N) first."""
    return [
        folder for _, folder in checkpoint_folders(output_dir)
        if (marker := read_marker(folder)) is not None and marker.get("series") == series
    ]


def _checkpoint_step(folder: str | os.PathLike) -> int:
    """The ``global_step`` of a checkpoint's ``trainer_state.json`` (0 when it cannot be read)."""
    step = (read_trainer_state(folder) or {}).get("global_step", 0)
    return step if isinstance(step, int) else 0


def check_foreign_checkpoints(output_dir: str | os.PathLike, series: str, resume: str | None) -> None:
    """Refuse ``checkpoint-N`` folders of ``output_dir`` that this run series did not write and that the run, going
    on from ``resume`` (or from step 0), could save into at step N and then delete by rotation.

    Raises:
        FileExistsError: naming the folders and how to proceed.
    """
    start = _checkpoint_step(resume) if resume else 0
    foreign = []
    for number, folder in checkpoint_folders(output_dir):
        if number <= start:
            continue
        marker = read_marker(folder)
        # A checkpoint of this series killed before its marker was in place is empty but for a temporary file.
        contents = [entry for entry in os.listdir(folder) if not entry.startswith(f"{RUN_MARKER}.")]
        if contents and (marker is None or marker.get("series") != series):
            foreign.append(os.path.basename(folder))
    if foreign:
        raise FileExistsError(
            f"--output_dir {output_dir} holds {', '.join(foreign)}, which this run did not write (no "
            f"{RUN_MARKER} of its run series inside). Going on from step {start}, the run could save a checkpoint "
            "into such a folder, overwriting its files, and delete it by --save_total_limit. Move "
            "them out of the folder, or give a new --output_dir."
        )


def partial_checkpoints(output_dir: str | os.PathLike) -> list[str]:
    """The ``checkpoint-N`` folders of ``output_dir`` without a whole ``trainer_state.json`` (a run killed or failed
    while saving, or a damaged file), lowest N first: never resumed."""
    return [folder for _, folder in checkpoint_folders(output_dir) if read_trainer_state(folder) is None]


def rotate_own_checkpoints(output_dir: str | os.PathLike, series: str, limit: int | None,
                           best: str | None = None) -> list[str]:
    """Delete this series' oldest complete checkpoints beyond ``limit``, keeping the newest and ``best``, and this
    series' partial checkpoints (which never count against the limit); returns the deleted.

    The semantics of transformers' ``rotate_checkpoints``, restricted to `own_checkpoints`.
    """
    if limit is None or limit <= 0:
        return []
    partial = {os.path.normpath(folder) for folder in partial_checkpoints(output_dir)}
    deleted = []
    checkpoints = []
    for folder in own_checkpoints(output_dir, series):
        if os.path.normpath(folder) in partial:
            shutil.rmtree(folder, ignore_errors=True)
            deleted.append(folder)
        else:
            checkpoints.append(folder)
    if not checkpoints:
        return deleted
    protected = {os.path.normpath(checkpoints[-1])}
    if best is not None:
        protected.add(os.path.normpath(best))
    keep = max(limit, len(protected & {os.path.normpath(c) for c in checkpoints}))
    remaining = len(checkpoints)
    for folder in checkpoints:
        if remaining <= keep:
            break
        if os.path.normpath(folder) not in protected:
            shutil.rmtree(folder, ignore_errors=True)
            deleted.append(folder)
            remaining -= 1
    return deleted


class RunGuardMixin:
    """Mixin for `transformers.Trainer` subclasses: the output folder, lock, rotation and resume rules of this module.

    ``run_data`` (an attribute, None by default) describes the training data for the resume check. The arguments
    may carry ``ignore_resume_mismatch`` (default False). While training, the Trainer's own rotation is off
    (``args.save_total_limit`` reads None; it deletes every ``checkpoint-*``) and this mixin rotates instead.
    ``trained_nothing`` is True after a `train` that resumed a checkpoint of its last step.
    """

    run_data: Mapping[str, Any] | None = None
    trained_nothing: bool = False

    def train(self, resume_from_checkpoint: str | bool | None = None, trial: Any = None, **kwargs: Any):
        args = self.args
        marker = check_output_dir(args.output_dir)  # on every process, before any of them writes
        if args.should_save:
            acquire_output_lock(args.output_dir)  # the saving process only: the other ranks never touch it
        try:
            return self._train_locked(marker, resume_from_checkpoint, trial, **kwargs)
        finally:
            if args.should_save:
                release_output_lock(args.output_dir)

    def _train_locked(self, marker: dict[str, Any] | None, resume_from_checkpoint: str | bool | None, trial: Any,
                      **kwargs: Any):
        args = self.args
        partial = partial_checkpoints(args.output_dir)
        if partial:
            logger.warning("Partial checkpoints in %s (no whole trainer_state.json: a run killed or failed while "
                           "saving, or a damaged file), never resumed: %s", args.output_dir,
                           ", ".join(os.path.basename(folder) for folder in partial))
        if resume_from_checkpoint is True:
            resume_from_checkpoint = last_checkpoint(args.output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(f"No complete checkpoint to resume from in --output_dir {args.output_dir}")
        resume = resume_from_checkpoint or None
        settings = run_settings(self.accelerator.unwrap_model(self.model).config, args, self.run_data)
        if self._check_settings(resume, marker, settings):
            settings = run_settings(self.accelerator.unwrap_model(self.model).config, args, self.run_data)
        if marker is not None:  # a folder without a marker was empty (`check_output_dir`)
            check_foreign_checkpoints(args.output_dir, marker["series"], resume)
        if resume:
            logger.warning("Resuming from %s", resume)  # warning: shown at the default log level
        self.accelerator.wait_for_everyone()
        self._run_marker = {**(marker or new_marker(settings)), "settings": settings}
        # A new run's marker goes in before anything else; another run's is replaced only once this run has loaded
        # its checkpoint's weights and saves (`_save_checkpoint`), so that a failed resume leaves it as it was.
        self._root_marker_pending = marker is not None
        if args.should_save and marker is None:
            write_marker(args.output_dir, self._run_marker)
        self.trained_nothing = False
        limit, args.save_total_limit = args.save_total_limit, None
        args._rotation_limit = limit  # noqa: SLF001 (pickled as save_total_limit, see MAGMATrainingArguments)
        try:
            output = super().train(resume_from_checkpoint=resume, trial=trial, **kwargs)
        finally:
            args.save_total_limit = limit
            args.__dict__.pop("_rotation_limit", None)
        if not self.trained_nothing:
            self._write_root_marker()
        best = self.state.best_model_checkpoint
        if args.should_save and best is not None and limit == 1:  # as the Trainer does at the end, for ours only
            for folder in own_checkpoints(self._get_output_dir(trial), self._run_marker["series"]):
                if not os.path.samefile(folder, best):
                    shutil.rmtree(folder, ignore_errors=True)
        return output

    def _write_root_marker(self) -> None:
        if self.args.should_save and getattr(self, "_root_marker_pending", False):
            write_marker(self.args.output_dir, self._run_marker)
            self._root_marker_pending = False

    def _init_training_state(self, max_steps: int, num_update_steps_per_epoch: int, num_train_epochs: int,
                             resume_from_checkpoint: str | None, trial: Any) -> tuple[int, int]:
        epochs_trained, steps_trained = super()._init_training_state(
            max_steps, num_update_steps_per_epoch, num_train_epochs, resume_from_checkpoint, trial
        )
        if resume_from_checkpoint is not None and self.state.global_step >= max_steps:
            # A checkpoint saved at the last step: the Trainer would start the unfinished epoch and stop only after
            # one more optimizer step (step max_steps + 1). There is nothing left to train.
            logger.warning("%s is at step %d of %d: training is complete, nothing is trained again",
                           resume_from_checkpoint, self.state.global_step, max_steps)
            self.trained_nothing = True
            return num_train_epochs, 0
        return epochs_trained, steps_trained

    def _check_settings(self, resume: str | None, marker: Mapping[str, Any] | None,
                        settings: Mapping[str, Any]) -> bool:
        """Raise when the checkpoint to resume (or, starting afresh, the folder's run) has other settings; with
        ``ignore_resume_mismatch``, set the arguments a resumed optimizer brings back to the checkpoint's values and
        return whether any was."""
        source = resume if resume else (self.args.output_dir if marker is not None else None)
        if source is None:
            return False
        saved = read_marker(resume) if resume else marker
        if saved is None:
            logger.warning("%s records no hf-magma run settings (written by an older version?): they are not "
                           "checked against this command's", source)
            return False
        differences = settings_differences(saved.get("settings", {}), settings)
        if not differences:
            return False
        if not getattr(self.args, "ignore_resume_mismatch", False):
            raise ValueError(resume_mismatch_message(source, differences, resuming=bool(resume)))
        if resume and any(line.startswith("training.optim:") for line in differences):
            raise ValueError(f"Not resuming {resume} with another optimizer ({_line(differences, 'optim')}), even "
                             "with --ignore_resume_mismatch: its saved state belongs to the optimizer it was made "
                             "with. Give the same --optim, or a new --output_dir.")
        logger.warning("Continuing %s with other settings (--ignore_resume_mismatch):\n  %s%s", source,
                       "\n  ".join(differences), model_note(differences))
        if not resume:
            return False
        training = saved["settings"].get("training", {})
        kept = [name for name in KEPT_FROM_CHECKPOINT if any(line.startswith(f"training.{name}:")
                                                               for line in differences)]
        for name in kept:
            setattr(self.args, name, training[name])
        if kept:
            logger.warning("Kept from %s (its optimizer and learning-rate scheduler state carry them): %s; "
                           "training_args.bin and the model card record these values", resume,
                           ", ".join(f"{name} {training[name]}" for name in kept))
        return bool(kept)

    def mark_checkpoint(self, trial: Any = None) -> None:
        """Write the run marker into the checkpoint about to be saved, before any other of its files, so that a save
        cut short leaves a folder this run series recognises as its own (and may rotate away)."""
        marker = getattr(self, "_run_marker", None)
        if marker is not None and self.args.should_save:
            self._write_root_marker()
            write_marker(os.path.join(self._get_output_dir(trial), f"checkpoint-{self.state.global_step}"), marker)

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        marker = getattr(self, "_run_marker", None)
        run_dir = self._get_output_dir(trial)
        folder = os.path.join(run_dir, f"checkpoint-{self.state.global_step}")
        # Before the Trainer's files: `trainer_state.json`, written last, marks a checkpoint complete.
        self.mark_checkpoint(trial)
        try:
            super()._save_checkpoint(model, trial)
        except (OSError, RuntimeError) as error:
            raise OSError(getattr(error, "errno", None) or errno.EIO, save_failure_message(folder, error)) from error
        if marker is not None and self.args.should_save:
            limit = self.args.__dict__.get("_rotation_limit")
            for old in rotate_own_checkpoints(run_dir, marker["series"], limit, self.state.best_model_checkpoint):
                logger.info("Deleted the older checkpoint %s (--save_total_limit %s)", old, limit)


def save_failure_message(folder: str, error: BaseException) -> str:
    """What a failed checkpoint save tells the user: the error, the space left where it was written, and the partial
    checkpoint left behind.

    Args:
        folder: the checkpoint folder being saved.
        error: what the save raised.
    Returns:
        One line.
    """
    try:
        usage = shutil.disk_usage(folder if os.path.isdir(folder) else os.path.dirname(folder) or ".")
        space = f"{usage.free / 2**30:.2f} GiB free of {usage.total / 2**30:.2f} GiB there"
    except OSError:
        space = "the free space there is unknown"
    return (f"Saving the checkpoint {folder} failed ({type(error).__name__}: {str(error).strip()}); {space}. The "
            "partial checkpoint is left behind and is never resumed: free some space (or move --output_dir), then "
            "rerun the command to resume from the last complete checkpoint.")


def _line(differences: list[str], name: str) -> str:
    return next(line for line in differences if line.startswith(f"training.{name}:")).partition(": ")[2]
