"""The settings that define a run (`run_settings`, recorded in ``hf_magma_run.json``), how two of them differ, and
the message of a resume refused for that."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

# Keys of a model config that describe how it was saved or called, not the model: left out of the comparison.
_VOLATILE_CONFIG_KEYS = frozenset({
    "transformers_version", "_name_or_path", "architectures", "dtype", "torch_dtype", "output_hidden_states",
    "output_attentions", "return_dict", "use_cache", "magma_weight", "uniformity_weight", "_attn_implementation",
    "_attn_implementation_autoset",
})


# The arguments that change what is trained (beyond the schedule): compared when a run resumes. The length of the
# run (max_steps, num_train_epochs) is not: extending a run is what resuming is for.
TRAINING_SETTINGS = (
    "learning_rate", "lr_scheduler_type", "lr_scheduler_kwargs", "warmup_steps", "per_device_train_batch_size",
    "gradient_accumulation_steps", "world_size", "magma_gather", "optim", "optim_args", "weight_decay", "adam_beta1",
    "adam_beta2", "adam_epsilon", "max_grad_norm", "bf16", "fp16", "dataloader_drop_last", "data_seed",
)
# Those a resumed optimizer and learning-rate scheduler bring back from the checkpoint, whatever the command says.
KEPT_FROM_CHECKPOINT = ("learning_rate", "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon")


def run_settings(config: Any, args: Any, data: Mapping[str, Any] | None) -> dict[str, Any]:
    """The settings that define a run, as a JSON-ready dict.

    Args:
        config: the model's `PretrainedConfig`.
        args: the `MAGMATrainingArguments` (schedule, U-MAE weight, seed, `TRAINING_SETTINGS`).
        data: a description of the training data (e.g. ``{"dataset": ..., "train_split": ...}``), or None.
    Returns:
        ``{"model": {...}, "data": {...} | None, "schedule": {...}, "training": {...}, "seed": int}``.
    """
    model = {key: value for key, value in sorted(config.to_dict().items()) if key not in _VOLATILE_CONFIG_KEYS}
    schedule = {name: getattr(args, name) for name in (
        "magma_weight", "magma_start_epoch", "magma_epochs", "magma_start_step", "magma_steps", "uniformity_weight",
    )}
    training = {name: getattr(getattr(args, name, None), "value", getattr(args, name, None))
                for name in TRAINING_SETTINGS}
    # Through JSON, so that a tuple and the list read back from a marker compare equal.
    return json.loads(json.dumps({"model": model, "data": dict(data) if data is not None else None,
                                  "schedule": schedule, "training": training, "seed": args.seed}, default=str))


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
    ``None``, is not compared, nor training settings a marker of an older version does not record)."""
    if saved.get("data") is None or present.get("data") is None:
        saved, present = {**saved, "data": None}, {**present, "data": None}
    if "training" not in saved:
        present = {key: value for key, value in present.items() if key != "training"}
    old, new = _flatten(saved), _flatten(present)
    missing = object()
    lines = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key, missing), new.get(key, missing)
        if before != after:
            show = lambda v: "(absent)" if v is missing else json.dumps(v)  # noqa: E731
            lines.append(f"{key}: {show(before)} -> {show(after)}")
    return lines


def resume_mismatch_message(source: str, differences: list[str], resuming: bool) -> str:
    """The error for a run whose settings differ from those of the checkpoint or folder ``source``: the
    differences and the ways out."""
    what = f"Not resuming {source}" if resuming else f"Not starting a new run in {source}"
    listed = "\n".join(f"  - {line}" for line in differences)
    return (
        f"{what}: it holds a run with other settings (saved -> this command):\n{listed}\n"
        "This would continue or overwrite another experiment. Give a new --output_dir to start a new run, or pass "
        f"--ignore_resume_mismatch true to continue it with the present settings anyway.{model_note(differences)}"
    )


def model_note(differences: list[str]) -> str:
    """A warning that the weights of a changed model may not load, when ``differences`` name model settings."""
    if not any(line.startswith("model.") for line in differences):
        return ""
    return ("\nThe model settings differ: a checkpoint loads into the present model only if every weight keeps its "
            "shape (e.g. not after a change of hidden_size, layers or patch size).")
