"""The pretraining run shared by the scripts: data, collators, `MAGMATrainer`, checkpoints, metrics, card, Hub."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
import transformers

from .augmentation import TwoViewAugmentation, TwoViewCollator
from .crop import MAE_CROP_SCALE, BatchImageTransform
from .cli import setup_logging
from .data import (
    FASHION_MNIST_HUB_ID,
    ImageCollator,
    ImageDataArguments,
    ImageTransform,
    find_image_column,
    find_label_column,
    load_image_datasets,
    num_classes,
)
from .in_memory import InMemoryCollator, load_in_memory
from .visualize import write_checkpoint_figures
from .trainer import MAGMATrainer, MAGMATrainingArguments, last_checkpoint

logger = logging.getLogger(__name__)

SIMCLR_CROP_SCALE = (0.08, 1.0)


def augmentation_card_rows(crop: dict[str, Any], in_memory: bool) -> dict[str, str]:
    """The training augmentation as model-card rows."""
    return {
        "random resized crop": f"scale {list(crop['scale'])}, ratio {[round(r, 4) for r in crop['ratio']]}, bicubic"
        if crop["random_crop"] else "off (whole image resized)",
        "horizontal flip": f"p={crop['hflip']}" if crop["hflip"] > 0 else "off",
        "where": "decoded once in memory, augmented in batches on the training device" if in_memory
        else "decoded and augmented in DataLoader workers",
    }


def device_batch_transforms(
    statistics: tuple[tuple[int, int], list[float], list[float]],
    channels: int,
    crop: dict[str, Any],
    two_view_augmentation: dict[str, Any] | None,
    seed: int,
    device: torch.device,
) -> dict[str, Callable[[torch.Tensor, int], dict[str, torch.Tensor]]]:
    """`MAGMATrainer` batch transforms for uint8 batches (the in-memory path): MAE's augmentation with ``crop``
    (or two SimCLR views) for training, resize + centre crop for evaluation; all on ``device``."""
    base = BatchImageTransform(*statistics, train=False, num_channels=channels).to(device)
    if two_view_augmentation is not None:
        train_views = TwoViewAugmentation(*statistics, **{**crop, **two_view_augmentation})
        eval_views = TwoViewAugmentation(*statistics, **{**crop, **two_view_augmentation, "seed": seed})
        return {"train": train_views.batch_transform(base), "eval": eval_views.batch_transform(base)}
    augment = BatchImageTransform(*statistics, train=True, num_channels=channels, **crop).to(device)

    def train(pixels: torch.Tensor, batch_seed: int) -> dict[str, torch.Tensor]:
        generator = torch.Generator(device=pixels.device).manual_seed(batch_seed)
        return {"pixel_values": augment(pixels, generator)}

    return {"train": train, "eval": lambda pixels, batch_seed: {"pixel_values": base(pixels)}}


def prepare_run(script_args: ImageDataArguments, training_args: MAGMATrainingArguments, logger_name: str) -> str | None:
    """Set up logging, check the arguments, seed everything; returns the checkpoint to resume from, if any.

    A run resumes from ``--resume_from_checkpoint`` or else from the last complete checkpoint in the output folder.
    """
    setup_logging(logger_name, training_args.get_process_log_level())
    if script_args.streaming and training_args.max_steps <= 0:
        raise ValueError("--streaming needs --max_steps: a streamed dataset has no known length")

    resume = training_args.resume_from_checkpoint
    if resume is None:
        resume = last_checkpoint(training_args.output_dir) if training_args.output_dir else None
        if resume is not None:
            logger.info("Resuming from the last checkpoint in the output folder: %s", resume)
    transformers.set_seed(training_args.seed)
    enable_tf32(training_args)
    return resume


def enable_tf32(training_args: MAGMATrainingArguments) -> bool:
    """TF32 matmuls and convolutions on CUDA (float32 work on tensor cores) unless ``--tf32 false`` was given;
    returns whether they are on."""
    if not torch.cuda.is_available() or training_args.tf32 is False:
        return False
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return True


def pretrain(
    script_args: ImageDataArguments,
    training_args: MAGMATrainingArguments,
    model: Any,
    image_processor: Any,
    *,
    resume: str | None = None,
    base_model: str | None = None,
    two_view_augmentation: dict[str, Any] | None = None,
    tags: Sequence[str] = ("magma",),
) -> dict[str, float]:
    """Pretrain ``model`` on the data of ``script_args``, save it (weights, config, image processor, model card),
    evaluate, push when asked; returns the final metrics.

    With ``two_view_augmentation`` (keyword arguments of `TwoViewAugmentation`, ``{}`` for the defaults) every batch
    holds two SimCLR-style views of its images (``pixel_values``, ``pixel_values_2``), for `ViTForSSL`.
    """
    splits = load_image_datasets(script_args, seed=training_args.data_seed or training_args.seed)
    image_column = script_args.image_column_name or find_image_column(splits["train"])
    label_column = script_args.label_column_name or find_label_column(splits["train"])
    num_labels = num_classes(splits["train"], label_column) if label_column is not None else None
    if label_column is not None and num_labels is None and training_args.online_probe:
        logger.info("The label column %r is not a ClassLabel: the online probe is off", label_column)
        label_column = None
    channels = model.config.num_channels
    two_view = two_view_augmentation is not None
    crop = script_args.augmentation_settings(default_scale=SIMCLR_CROP_SCALE if two_view else MAE_CROP_SCALE)
    base = ImageTransform.from_image_processor(image_processor, train=False, num_channels=channels)
    statistics = (base.size, base.mean.flatten().tolist(), base.std.flatten().tolist())

    def collator(train: bool) -> ImageCollator | TwoViewCollator:
        if not two_view:
            transform = ImageTransform.from_image_processor(
                image_processor, train=train, num_channels=channels, **(crop if train else {})
            )
            return ImageCollator(transform, image_column, label_column)
        # The views are drawn on the resized, centre-cropped images; evaluation uses its own seeded stream.
        settings = {**crop, **two_view_augmentation}
        if not train:
            settings["seed"] = training_args.seed
        return TwoViewCollator(ImageCollator(base, image_column, label_column), TwoViewAugmentation(*statistics, **settings))

    in_memory = load_in_memory(splits, script_args, image_column, label_column, channels)
    if in_memory is None:
        train_data, eval_data = splits["train"], splits.get("validation")
        collators = {"data_collator": collator(train=True), "eval_data_collator": collator(train=False)}
        batch_transforms = None
    else:
        held, skipped = in_memory
        train_data, eval_data = held["train"], held.get("validation")
        collators = {"data_collator": InMemoryCollator(skipped), "eval_data_collator": InMemoryCollator()}
        batch_transforms = device_batch_transforms(statistics, channels, crop, two_view_augmentation,
                                                   training_args.seed, training_args.device)
    do_eval = training_args.eval_strategy != "no" or training_args.do_eval
    trainer = MAGMATrainer(
        model=model,
        args=training_args,
        train_dataset=train_data,
        eval_dataset=eval_data if do_eval else None,
        **collators,
        batch_transforms=batch_transforms,
        processing_class=image_processor,
        num_labels=num_labels if label_column is not None else None,
    )
    dataset_name = script_args.dataset_name or script_args.train_dir or FASHION_MNIST_HUB_ID
    trainer.model_card_kwargs = {"dataset_name": dataset_name, "base_model": base_model,
                                 "augmentation": augmentation_card_rows(crop, in_memory is not None)}

    train_result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model()
    metrics = dict(train_result.metrics)
    train_collator = trainer.data_collator
    skipped = (train_collator.collator if isinstance(train_collator, TwoViewCollator) else train_collator).skipped
    metrics["train_skipped_images"] = skipped
    if skipped:
        logger.warning("%d unreadable training images were skipped (named above)", skipped)
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    trainer.save_state()

    if eval_data is not None and do_eval:
        eval_metrics = trainer.evaluate(eval_data)
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
        metrics.update(eval_metrics)

    card = trainer.create_model_card()  # the pushes during training wrote it too; this one has the final summary
    if card is not None:
        logger.info("Model card written to %s/README.md", trainer.args.output_dir)
        if training_args.figures:
            written = write_checkpoint_figures(
                training_args.output_dir, splits.get("validation"), figures=training_args.figures,
                image_processor=image_processor, seed=training_args.seed,
            )
            logger.info("Figures written and embedded in the model card: %s", ", ".join(written.values()))
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset=dataset_name, tags=list(tags))
    return metrics
