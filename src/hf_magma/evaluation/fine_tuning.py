"""Full fine-tuning of an encoder as a `ViTForImageClassification` (paper Table 2) with the transformers
`Trainer`, plainly or the MAE way (`FineTuningArguments`: layer-wise lr decay, drop path, mixup / CutMix, label
smoothing, RandAugment, the base-lr rule). Unreadable images are skipped, counted and named, as in pretraining."""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import datasets
import torch
from torch import nn
from torch.nn import functional as F
from transformers import Trainer, TrainingArguments, ViTForImageClassification

from ..data.transforms import ImageCollator, ImageTransform
from ..encoders.loading import load_encoder
from ..models.export import vit_config_from
from ..training.eval_collator import EvalCollatorMixin
from .fine_tuning_args import FineTuningArguments, finetune_learning_rate
from .fine_tuning_augment import BatchRandAugment, FineTuningCollator, add_drop_path
from .layer_decay import param_groups_layer_decay
from .metrics import classification_accuracy

logger = logging.getLogger(__name__)


def image_classifier_from_encoder(
    model_name_or_path_or_model: str | os.PathLike | nn.Module,
    num_labels: int,
    *,
    id2label: dict[int, str] | None = None,
    revision: str | None = None,
    drop_path_rate: float = 0.0,
    image_size: int | None = None,
) -> ViTForImageClassification:
    """A `ViTForImageClassification` whose encoder is the checkpoint's (every encoder weight copied, checked),
    with a freshly initialised classifier: the starting point of full fine-tuning (paper Table 2).

    Args:
        model_name_or_path_or_model: a checkpoint (ours, ViT-MAE or ViT) or a loaded model.
        num_labels: the number of classes (at least 2).
        id2label: class names (default their indices).
        revision: the Hub revision of the checkpoint.
        drop_path_rate: stochastic depth of the last block (`add_drop_path`); 0 leaves the blocks as they are.
        image_size: a resolution other than the encoder's: the classifier is built for it, its position embeddings
            interpolated once from the encoder's (bicubic, transformers' ``interpolate_pos_encoding``).

    Returns:
        The classifier, in training mode's initial state.
    """
    if num_labels < 2:
        raise ValueError(f"fine-tuning needs at least 2 classes, got num_labels={num_labels}")
    encoder = load_encoder(model_name_or_path_or_model, revision=revision)
    id2label = id2label or {i: str(i) for i in range(num_labels)}
    image_size = image_size or encoder.config.image_size
    config = vit_config_from(
        encoder.config, num_labels=num_labels, id2label=id2label, label2id={v: k for k, v in id2label.items()},
        image_size=image_size,
    )
    model = ViTForImageClassification(config)
    weights = {k: v for k, v in encoder.state_dict().items() if not k.startswith("pooler.")}
    if image_size != encoder.config.image_size:
        positions = model.vit.embeddings.position_embeddings.shape[1]
        with torch.no_grad():
            weights["embeddings.position_embeddings"] = encoder.embeddings.interpolate_pos_encoding(
                torch.zeros(1, positions, config.hidden_size), image_size, image_size).clone()
    missing, unexpected = model.vit.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"the encoder's weights do not map onto ViTForImageClassification: missing {missing}, "
            f"unexpected {unexpected}"
        )
    if drop_path_rate > 0:
        add_drop_path(model, drop_path_rate)
    return model


class FineTuningTrainer(EvalCollatorMixin, Trainer):
    """A `Trainer` whose loss takes class indices (with ``label_smoothing_factor``) or mixed (B, num_labels)
    targets, leaves out batches whose images were all unreadable, builds evaluation batches with
    ``eval_data_collator`` (no augmentation, no mixing) and, with ``layer_decay``, MAE's layer-wise parameter
    groups (`param_groups_layer_decay`) for the optimizer ``--optim`` names."""

    def __init__(self, *args: Any, eval_data_collator: Any = None, layer_decay: float | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.eval_data_collator = eval_data_collator
        self.layer_decay = layer_decay
        self.loss_is_scaled_for_ga = False  # a mean over the batch: the Trainer divides by the accumulation

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        if self.layer_decay is None or self.optimizer is not None:
            return super().create_optimizer(model)
        opt_model = self.model if model is None else model
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        groups = param_groups_layer_decay(opt_model, self.args.learning_rate, self.args.weight_decay,
                                          self.layer_decay)
        self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None):
        labels = inputs["labels"]
        outputs = model(pixel_values=inputs["pixel_values"])
        logits = outputs.logits
        if logits.shape[0] == 0:
            loss = logits.sum() * 0.0
        elif labels.ndim == 2:  # mixed targets, already smoothed
            loss = torch.sum(-labels * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()
        else:
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=self.args.label_smoothing_factor)
        return (loss, outputs) if return_outputs else loss


def finetune(
    model_name_or_path_or_model: str | os.PathLike | nn.Module,
    train_dataset: datasets.Dataset,
    eval_dataset: datasets.Dataset,
    training_args: TrainingArguments,
    *,
    train_transform: ImageTransform,
    eval_transform: ImageTransform,
    image_column: str,
    label_column: str,
    num_labels: int,
    revision: str | None = None,
    options: FineTuningArguments | None = None,
    image_size: int | None = None,
) -> dict[str, float]:
    """Fully fine-tune `image_classifier_from_encoder` with the transformers `Trainer`.

    Hyperparameters come from ``training_args`` (label smoothing: ``label_smoothing_factor``; warm-up + cosine:
    ``lr_scheduler_type="cosine"`` and ``warmup_steps``), MAE's additions from ``options`` (default: none).
    Unreadable images are left out of their batch, counted and named in the log.

    Args:
        model_name_or_path_or_model: the encoder's checkpoint or model.
        train_dataset: raw training examples (images decoded by the collator).
        eval_dataset: raw test examples.
        training_args: the `Trainer`'s arguments.
        train_transform: the training images' transform (MAE's crop and flip).
        eval_transform: the test images' transform (resize and centre crop).
        image_column: the image column of both datasets.
        label_column: the label column of both datasets.
        num_labels: the number of classes.
        revision: the Hub revision of the checkpoint.
        options: layer decay, drop path, mixup / CutMix, RandAugment, base learning rate.
        image_size: the transforms' resolution when it is not the encoder's (`image_classifier_from_encoder`).

    Returns:
        ``{"finetune_accuracy": top-1 on eval_dataset}``.
    """
    options = options or FineTuningArguments()
    model = image_classifier_from_encoder(model_name_or_path_or_model, num_labels, revision=revision,
                                          drop_path_rate=options.drop_path_rate, image_size=image_size)
    rand_augment = None
    if options.rand_augment_ops > 0:
        rand_augment = BatchRandAugment(options.rand_augment_ops, options.rand_augment_magnitude,
                                        options.rand_augment_group_size)
    mixing = None
    if options.mixes:
        mixing = {"mixup_alpha": options.mixup_alpha, "cutmix_alpha": options.cutmix_alpha,
                  "prob": options.mixup_prob, "switch_prob": options.mixup_switch_prob}
    train_collator = FineTuningCollator(
        ImageCollator(train_transform, image_column, label_column), num_labels, rand_augment=rand_augment,
        mixing=mixing, smoothing=training_args.label_smoothing_factor,
    )
    eval_collator = ImageCollator(eval_transform, image_column, label_column)
    # The collators decode the raw columns, so they must reach them; the classifier is saved in output_dir, but
    # only the model card is pushed.
    args = dataclasses.replace(training_args, remove_unused_columns=False, push_to_hub=False,
                               learning_rate=finetune_learning_rate(training_args, options))
    trainer = FineTuningTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=train_collator,
        eval_data_collator=eval_collator,
        compute_metrics=classification_accuracy,
        layer_decay=options.layer_decay,
    )
    trainer.train()
    metrics = trainer.evaluate()
    if train_collator.skipped or eval_collator.skipped:
        logger.warning("Fine-tuning left out %d unreadable training image(s) (counted over the epochs) and %d test "
                       "image(s); the accuracy is over the readable test images", train_collator.skipped,
                       eval_collator.skipped)
    return {"finetune_accuracy": float(metrics["eval_accuracy"])}
