"""Full fine-tuning of an encoder as a `ViTForImageClassification` (paper Table 2) with the transformers
`Trainer`."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import datasets
import torch
from torch import nn
from transformers import Trainer, TrainingArguments, ViTForImageClassification

from ..encoders.loading import load_encoder
from ..models.export import vit_config_from
from .metrics import classification_accuracy


def image_classifier_from_encoder(
    model_name_or_path_or_model: str | os.PathLike | nn.Module,
    num_labels: int,
    *,
    id2label: dict[int, str] | None = None,
    revision: str | None = None,
) -> ViTForImageClassification:
    """A `ViTForImageClassification` whose encoder is the checkpoint's (every encoder weight copied, checked),
    with a freshly initialised classifier: the starting point of full fine-tuning (paper Table 2)."""
    if num_labels < 2:
        raise ValueError(f"fine-tuning needs at least 2 classes, got num_labels={num_labels}")
    encoder = load_encoder(model_name_or_path_or_model, revision=revision)
    id2label = id2label or {i: str(i) for i in range(num_labels)}
    config = vit_config_from(
        encoder.config, num_labels=num_labels, id2label=id2label, label2id={v: k for k, v in id2label.items()}
    )
    model = ViTForImageClassification(config)
    weights = {k: v for k, v in encoder.state_dict().items() if not k.startswith("pooler.")}
    missing, unexpected = model.vit.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"the encoder's weights do not map onto ViTForImageClassification: missing {missing}, "
            f"unexpected {unexpected}"
        )
    return model



def finetune(
    model_name_or_path_or_model: str | os.PathLike | nn.Module,
    train_dataset: datasets.Dataset,
    eval_dataset: datasets.Dataset,
    training_args: TrainingArguments,
    *,
    train_transform: Callable[[Any], torch.Tensor],
    eval_transform: Callable[[Any], torch.Tensor],
    image_column: str,
    label_column: str,
    num_labels: int,
    revision: str | None = None,
) -> dict[str, float]:
    """Fully fine-tune `image_classifier_from_encoder` with the transformers `Trainer`; returns
    ``finetune_accuracy`` (top-1 on ``eval_dataset``). Hyperparameters come from ``training_args``."""
    model = image_classifier_from_encoder(model_name_or_path_or_model, num_labels, revision=revision)

    def with_pixels(transform):
        def apply(batch):
            return {
                "pixel_values": [transform(image) for image in batch[image_column]],
                "labels": batch[label_column],
            }

        return apply

    # The transform adds the model's inputs on the fly, so the raw columns must reach it; the classifier is
    # saved in output_dir, but only the model card is pushed.
    args = dataclasses.replace(training_args, remove_unused_columns=False, push_to_hub=False)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_dataset.with_transform(with_pixels(train_transform)),
        eval_dataset=eval_dataset.with_transform(with_pixels(eval_transform)),
        compute_metrics=classification_accuracy,
    )
    trainer.train()
    metrics = trainer.evaluate()
    return {"finetune_accuracy": float(metrics["eval_accuracy"])}
