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

import json
import logging
import os
import shutil
import uuid
from collections.abc import Mapping
from typing import Any

from ..records.trainer_state import checkpoint_folders, last_checkpoint, read_trainer_state

logger = logging.getLogger(__name__)

RUN_MARKER = "hf_magma_run.json"
# Keys of a model config that describe how it was saved or called, not the model: left out of the comparison.
_VOLATILE_CONFIG_KEYS = frozenset({
    "transformers_version", "_name_or_path", "architectures", "dtype", "torch_dtype", "output_hidden_states",
    "output_attentions", "return_dict", "use_cache", "magma_weight", "uniformity_weight", "_attn_implementation",
    "_attn_implementation_autoset",
})


def run_settings(config: Any, args: Any, data: Mapping[str, Any] | None) -> dict[str, Any]:
    """The settings that define a run, as a JSON-ready dict.

    Args:
        config: the model's `PretrainedConfig`.
        args: the `MAGMATrainingArguments` (schedule, U-MAE weight, seed).
        data: a description of the training data (e.g. ``{"dataset": ..., "train_split": ...}``), or None.
    Returns:
        ``{"model": {...}, "data": {...} | None, "schedule": {...}, "seed": int}``.
    """
    model = {key: value for key, value in sorted(config.to_dict().items()) if key not in _VOLATILE_CONFIG_KEYS}
    schedule = {name: getattr(args, name) for name in (
        "magma_weight", "magma_start_epoch", "magma_epochs", "magma_start_step", "magma_steps", "uniformity_weight",
    )}
    # Through JSON, so that a tuple and the list read back from a marker compare equal.
    return json.loads(json.dumps({"model": model, "data": dict(data) if data is not None else None,
                                  "schedule": schedule, "seed": args.seed}, default=str))


def _flatten(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def settings_differences(saved: Mapping[str, Any], present: Mapping[str, Any]) -> list[str]:
    """Lines ``name: saved -> present`` for every setting that differs (a data source unknown on either side,
    ``None``, is not compared)."""
    if saved.get("data") is None or present.get("data") is None:
        saved, present = {**saved, "data": None}, {**present, "data": None}
    old, new = _flatten(saved), _flatten(present)
    missing = object()
    lines = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key, missing), new.get(key, missing)
        if before != after:
            show = lambda v: "(absent)" if v is missing else json.dumps(v)  # noqa: E731
            lines.append(f"{key}: {show(before)} -> {show(after)}")
    return lines


def read_marker(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The run marker of ``folder`` (an output or checkpoint folder), or None when it has none or it is unreadable."""
    try:
        with open(os.path.join(folder, RUN_MARKER), encoding="utf-8") as handle:
            marker = json.load(handle)
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and "series" in marker else None


def write_marker(folder: str | os.PathLike, marker: Mapping[str, Any]) -> None:
    """Write ``marker`` into ``folder`` atomically (a kill leaves the old file or the new one, never half of one)."""
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
    entries = sorted(name for name in os.listdir(output_dir) if not name.startswith(f"{RUN_MARKER}."))
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


def rotate_own_checkpoints(output_dir: str | os.PathLike, series: str, limit: int | None,
                           best: str | None = None) -> list[str]:
    """Delete this series' oldest checkpoints beyond ``limit``, keeping the newest and ``best``; returns the deleted.

    The semantics of transformers' ``rotate_checkpoints``, restricted to `own_checkpoints`.
    """
    if limit is None or limit <= 0:
        return []
    checkpoints = own_checkpoints(output_dir, series)
    if not checkpoints:
        return []
    protected = {os.path.normpath(checkpoints[-1])}
    if best is not None:
        protected.add(os.path.normpath(best))
    keep = max(limit, len(protected & {os.path.normpath(c) for c in checkpoints}))
    deleted = []
    remaining = len(checkpoints)
    for folder in checkpoints:
        if remaining <= keep:
            break
        if os.path.normpath(folder) not in protected:
            shutil.rmtree(folder, ignore_errors=True)
            deleted.append(folder)
            remaining -= 1
    return deleted


def resume_mismatch_message(source: str, differences: list[str], resuming: bool) -> str:
    """The error for a run whose settings differ from those of the checkpoint or folder ``source``: the
    differences and the ways out."""
    what = f"Not resuming {source}" if resuming else f"Not starting a new run in {source}"
    listed = "\n".join(f"  - {line}" for line in differences)
    return (
        f"{what}: it holds a run with other settings (saved -> this command):\n{listed}\n"
        "This would continue or overwrite another experiment. Give a new --output_dir to start a new run, or pass "
        f"--ignore_resume_mismatch true to continue it with the present settings anyway.{_model_note(differences)}"
    )


def _model_note(differences: list[str]) -> str:
    """A warning that the weights of a changed model may not load, when ``differences`` name model settings."""
    if not any(line.startswith("model.") for line in differences):
        return ""
    return ("\nThe model settings differ: a checkpoint loads into the present model only if every weight keeps its "
            "shape (e.g. not after a change of hidden_size, layers or patch size).")


class RunGuardMixin:
    """Mixin for `transformers.Trainer` subclasses: the output folder, rotation and resume rules of this module.

    ``run_data`` (an attribute, None by default) describes the training data for the resume check. The arguments
    may carry ``ignore_resume_mismatch`` (default False). While training, the Trainer's own rotation is off
    (``args.save_total_limit`` reads None; it deletes every ``checkpoint-*``) and this mixin rotates instead.
    """

    run_data: Mapping[str, Any] | None = None

    def train(self, resume_from_checkpoint: str | bool | None = None, trial: Any = None, **kwargs: Any):
        args = self.args
        marker = check_output_dir(args.output_dir)  # on every process, before any of them writes
        if resume_from_checkpoint is True:
            resume_from_checkpoint = last_checkpoint(args.output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(f"No complete checkpoint to resume from in --output_dir {args.output_dir}")
        settings = run_settings(self.accelerator.unwrap_model(self.model).config, args, self.run_data)
        self._check_settings(resume_from_checkpoint or None, marker, settings)
        if marker is not None:  # a folder without a marker was empty (`check_output_dir`)
            check_foreign_checkpoints(args.output_dir, marker["series"], resume_from_checkpoint or None)
        if resume_from_checkpoint:
            logger.warning("Resuming from %s", resume_from_checkpoint)  # warning: shown at the default log level
        self.accelerator.wait_for_everyone()
        self._run_marker = {**(marker or new_marker(settings)), "settings": settings}
        if args.should_save:
            write_marker(args.output_dir, self._run_marker)
        limit, args.save_total_limit = args.save_total_limit, None
        args._rotation_limit = limit  # noqa: SLF001 (pickled as save_total_limit, see MAGMATrainingArguments)
        try:
            output = super().train(resume_from_checkpoint=resume_from_checkpoint or None, trial=trial, **kwargs)
        finally:
            args.save_total_limit = limit
            args.__dict__.pop("_rotation_limit", None)
        best = self.state.best_model_checkpoint
        if args.should_save and best is not None and limit == 1:  # as the Trainer does at the end, for ours only
            for folder in own_checkpoints(self._get_output_dir(trial), self._run_marker["series"]):
                if not os.path.samefile(folder, best):
                    shutil.rmtree(folder, ignore_errors=True)
        return output

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
            return num_train_epochs, 0
        return epochs_trained, steps_trained

    def _check_settings(self, resume: str | None, marker: Mapping[str, Any] | None,
                        settings: Mapping[str, Any]) -> None:
        """Raise when the checkpoint to resume (or, starting afresh, the folder's run) has other settings."""
        source = resume if resume else (self.args.output_dir if marker is not None else None)
        if source is None:
            return
        saved = read_marker(resume) if resume else marker
        if saved is None:
            logger.warning("%s records no hf-magma run settings (written by an older version?): they are not "
                           "checked against this command's", source)
            return
        differences = settings_differences(saved.get("settings", {}), settings)
        if not differences:
            return
        if getattr(self.args, "ignore_resume_mismatch", False):
            logger.warning("Continuing %s with other settings (--ignore_resume_mismatch):\n  %s%s", source,
                           "\n  ".join(differences), _model_note(differences))
            return
        raise ValueError(resume_mismatch_message(source, differences, resuming=bool(resume)))

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        marker = getattr(self, "_run_marker", None)
        run_dir = self._get_output_dir(trial)
        if marker is not None and self.args.should_save:
            # Before the Trainer's files: `trainer_state.json`, written last, marks a checkpoint complete.
            write_marker(os.path.join(run_dir, f"checkpoint-{self.state.global_step}"), marker)
        super()._save_checkpoint(model, trial)
        if marker is not None and self.args.should_save:
            limit = self.args.__dict__.get("_rotation_limit")
            for folder in rotate_own_checkpoints(run_dir, marker["series"], limit, self.state.best_model_checkpoint):
                logger.info("Deleted the older checkpoint %s (--save_total_limit %s)", folder, limit)
