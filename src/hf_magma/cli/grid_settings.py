"""What defines a grid cell: the recipe's training arguments for one (method, seed), and the settings recorded in
its JSON and compared when a finished cell is met again."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from ..data.arguments import ImageDataArguments
from ..models.arguments import MAGMAModelArguments
from ..training.training_args import MAGMATrainingArguments
from .grid_results import METHODS

# The training settings that define a cell (and must match for a finished cell to be reused).
TRAINING_SETTINGS = (
    "seed", "num_train_epochs", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps",
    "learning_rate", "base_learning_rate", "weight_decay", "adam_beta1", "adam_beta2", "max_grad_norm",
    "lr_scheduler_type", "warmup_steps", "magma_weight", "magma_start_epoch", "magma_epochs", "magma_start_step",
    "magma_steps", "uniformity_weight", "magma_gather", "bf16", "fp16",
)
DATA_SETTINGS = ("dataset_name", "dataset_config_name", "train_dir", "validation_dir", "train_split",
                 "max_train_samples", "image_column_name", "label_column_name")
AUGMENTATION_DEFAULTS = {"random_crop": True, "crop_scale": None, "crop_ratio": [3 / 4, 4 / 3],
                         "horizontal_flip": True}
MODEL_SETTINGS = ("model_name_or_path", "config_name", "config_overrides", "mask_ratio", "norm_pix_loss",
                  "magma_reference_layers", "magma_target_layer")


def method_training_args(training_args: MAGMATrainingArguments, method: str, seed: int) -> MAGMATrainingArguments:
    """The recipe's training arguments for one cell: the method's terms, the seed, its own output folder."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {list(METHODS)}")
    use_magma, use_uniformity = METHODS[method]
    if use_magma and not training_args.magma_weight > 0:
        raise ValueError(
            f"{method} needs a positive magma_weight (lambda) in the recipe, got {training_args.magma_weight}"
        )
    if use_uniformity and not training_args.uniformity_weight > 0:
        raise ValueError(
            f"{method} needs a positive uniformity_weight (mu) in the recipe, got {training_args.uniformity_weight}"
        )
    return dataclasses.replace(
        training_args,
        output_dir=os.path.join(training_args.output_dir, method, f"seed{seed}"),
        seed=seed,
        data_seed=None,
        magma_weight=training_args.magma_weight if use_magma else 0.0,
        uniformity_weight=training_args.uniformity_weight if use_uniformity else 0.0,
        push_to_hub=False,
    )


def cell_settings(
    data_args: ImageDataArguments,
    training_args: MAGMATrainingArguments,
    model_args: MAGMAModelArguments,
    reproduce_args: Any,
) -> dict[str, Any]:
    """The settings that define a cell's result (recorded in its JSON and compared on a rerun)."""
    data = {k: getattr(data_args, k) for k in DATA_SETTINGS}
    # The training augmentation, recorded when it is not MAE's (so that cells made before it was an option match).
    augmentation = {k: getattr(data_args, k) for k in AUGMENTATION_DEFAULTS}
    if augmentation != AUGMENTATION_DEFAULTS:
        data["augmentation"] = augmentation
    return {
        "model": {k: getattr(model_args, k) for k in MODEL_SETTINGS},
        "data": data,
        "training": {k: getattr(training_args, k) for k in TRAINING_SETTINGS},
        "evaluation": evaluation_settings(reproduce_args),
    }


def evaluation_settings(reproduce_args: Any) -> dict[str, Any]:
    """The protocol recorded in every cell (label fractions only when other than all labels, as before they
    were an option)."""
    settings: dict[str, Any] = {
        "knn_k": reproduce_args.knn_k,
        "knn_weighting": "distance",
        "linear_epochs": reproduce_args.linear_epochs,
        "pooling": reproduce_args.pooling,
        "linear": "SGD lr 0.1, momentum 0.9, batch 256, lr x0.1 at epochs 60 and 80, raw features",
    }
    if list(reproduce_args.label_fractions) != [1.0]:
        settings["label_fractions"] = list(reproduce_args.label_fractions)
    return settings


def differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            out += differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix[:-1]}: {old!r} (finished cell) vs {new!r} (now)"]
