"""Pretrain a ViT-MAE with MAGMA (M-MAE; MU-MAE with --uniformity_weight 0.01; plain MAE with --magma_weight 0).

Installed as the `hf-magma-pretrain` command; `python scripts/run_mae_magma.py` and
`python -m hf_magma.cli.run_mae_magma` are the same program.

Examples:

    # the small CPU demo on the offline Fashion-MNIST
    python scripts/run_mae_magma.py --config recipes/fashion_mnist_cpu.yaml

    # a paper setting on one or more GPUs
    accelerate launch --config_file scripts/accelerate_configs/multi_gpu.yaml \\
        scripts/run_mae_magma.py --config recipes/cifar100/m_mae.yaml

A run resumes automatically from the last checkpoint in --output_dir (or from --resume_from_checkpoint).
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
from collections.abc import Sequence
from typing import Any

import torch
import transformers

from ..data.arguments import ImageDataArguments
from ..data.channels import resolve_image_statistics, uses_float_pixels
from ..data.columns import num_classes, resolve_columns
from ..data.crop import MAE_CROP_SCALE
from ..data.fashion_mnist import FASHION_MNIST_HUB_ID
from ..data.in_memory import (
    SIMCLR_CROP_SCALE,
    InMemoryCollator,
    augmentation_card_rows,
    device_batch_transforms,
    load_in_memory,
)
from ..data.loading import load_image_datasets
from ..data.transforms import ImageCollator, ImageTransform
from ..models.arguments import (
    MAGMAModelArguments,
    load_model_and_image_processor,
)
from ..records.trainer_state import last_checkpoint, read_trainer_state
from ..training.run_guard import check_output_dir
from ..training.run_lock import acquire_output_lock, release_output_lock
from ..training.trainer import MAGMATrainer
from ..training.training_args import MAGMATrainingArguments
from ..utils.distributed import close_process_group
from ..visualize import write_checkpoint_figures
from .parser import MAGMAArgumentParser, run_program, setup_logging

logger = logging.getLogger(__name__)


def prepare_run(data_args: ImageDataArguments, training_args: MAGMATrainingArguments, logger_name: str) -> str | None:
    """Set up logging, check the arguments, seed everything; returns the checkpoint to resume from, if any.

    A run resumes from ``--resume_from_checkpoint`` or else from the last complete checkpoint in the output folder.
    """
    setup_logging(logger_name, training_args.get_process_log_level())
    if data_args.streaming and training_args.max_steps <= 0:
        raise ValueError("--streaming needs --max_steps: a streamed dataset has no known length")

    if training_args.output_dir:
        check_output_dir(training_args.output_dir)  # before loading anything; the trainer checks again
        if training_args.should_save:  # one writer per folder, from here to the end of `pretrain`
            acquire_output_lock(training_args.output_dir)
            atexit.register(release_output_lock, training_args.output_dir)
    resume = training_args.resume_from_checkpoint
    if resume is None:
        resume = last_checkpoint(training_args.output_dir) if training_args.output_dir else None
    transformers.set_seed(training_args.seed)
    enable_tf32(training_args)
    return resume


def data_description(data_args: ImageDataArguments) -> dict[str, Any]:
    """What defines the training data of a run, for the resume check (`hf_magma.training.run_guard`)."""
    source = data_args.dataset_name or (os.path.abspath(data_args.train_dir) if data_args.train_dir else None)
    return {"source": source or FASHION_MNIST_HUB_ID, "config": data_args.dataset_config_name,
            "split": data_args.train_split, "max_train_samples": data_args.max_train_samples}
def enable_tf32(training_args: MAGMATrainingArguments) -> bool:
    """TF32 matmuls and convolutions on CUDA (float32 work on tensor cores) unless ``--tf32 false`` was given;
    returns whether they are on."""
    if not torch.cuda.is_available() or training_args.tf32 is False:
        return False
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return True


def _collator(
    image_processor: Any,
    model: Any,
    image_column: str,
    label_column: str | None,
    two_view_augmentation: dict[str, Any] | None,
    eval_seed: int | None,
    crop: dict[str, Any],
) -> Any:
    """The training collator (``eval_seed=None``) or the evaluation one (two views drawn from a seeded stream),
    decoding and augmenting per image in DataLoader workers with the ``crop`` settings."""
    train = eval_seed is None
    channels = model.config.num_channels
    if two_view_augmentation is None:
        transform = ImageTransform.from_image_processor(
            image_processor, train=train, num_channels=channels, **(crop if train else {})
        )
        return ImageCollator(transform, image_column, label_column)
    from ..data.two_views import TwoViewAugmentation, TwoViewCollator  # kornia: the `ssl` extra

    # The views are drawn on the resized, centre-cropped images; evaluation uses its own seeded stream.
    transform = ImageTransform.from_image_processor(image_processor, train=False, num_channels=channels)
    settings = {**crop, **two_view_augmentation}
    if not train:
        settings["seed"] = eval_seed
    augmentation = TwoViewAugmentation(
        transform.size, transform.mean.flatten().tolist(), transform.std.flatten().tolist(), **settings
    )
    return TwoViewCollator(ImageCollator(transform, image_column, label_column), augmentation)


def _data_and_collators(data_args: ImageDataArguments, training_args: MAGMATrainingArguments, splits: dict,
                        model: Any, image_processor: Any, columns: tuple[str, str | None],
                        two_view_augmentation: dict[str, Any] | None) -> tuple[Any, Any, dict[str, Any]]:
    """``(train data, eval data, trainer keywords)`` of the in-memory path (uint8 batches augmented on the
    device) when ``--in_memory`` allows it, else of the DataLoader-worker path; the keywords hold the collators,
    the batch transforms and the model card's augmentation rows."""
    image_column, label_column = columns
    channels = model.config.num_channels
    crop = data_args.augmentation_settings(SIMCLR_CROP_SCALE if two_view_augmentation is not None else MAE_CROP_SCALE)
    held = load_in_memory(splits, data_args, image_column, label_column, channels)
    if held is None:
        keywords = {
            "data_collator": _collator(image_processor, model, image_column, label_column, two_view_augmentation,
                                       None, crop),
            "eval_data_collator": _collator(image_processor, model, image_column, label_column,
                                            two_view_augmentation, training_args.seed, crop),
        }
        train_data, eval_data = splits["train"], splits.get("validation")
    else:
        datasets_in_memory, skipped = held
        base = ImageTransform.from_image_processor(image_processor, train=False, num_channels=channels)
        statistics = (base.size, base.mean.flatten().tolist(), base.std.flatten().tolist())
        keywords = {
            "data_collator": InMemoryCollator(skipped), "eval_data_collator": InMemoryCollator(),
            "batch_transforms": device_batch_transforms(statistics, channels, crop, two_view_augmentation,
                                                        training_args.seed, training_args.device),
        }
        train_data, eval_data = datasets_in_memory["train"], datasets_in_memory.get("validation")
    keywords["augmentation"] = augmentation_card_rows(crop, held is not None)
    return train_data, eval_data, keywords


def pretrain(
    data_args: ImageDataArguments,
    training_args: MAGMATrainingArguments,
    model: Any,
    image_processor: Any,
    *,
    resume: str | None = None,
    base_model: str | None = None,
    two_view_augmentation: dict[str, Any] | None = None,
    tags: Sequence[str] = ("magma",),
    callbacks: Sequence[transformers.TrainerCallback] = (),
) -> dict[str, float]:
    """Pretrain ``model`` on the data of ``data_args``, save it (weights, config, image processor, model card),
    evaluate, push when asked; returns the final metrics.

    With ``two_view_augmentation`` (keyword arguments of `TwoViewAugmentation`, ``{}`` for the defaults) every batch
    holds two SimCLR-style views of its images (``pixel_values``, ``pixel_values_2``), for `ViTForSSL`.
    ``callbacks`` are added to the trainer's. A run that resumes a finished run whose results are recorded trains
    nothing and writes nothing: it returns the recorded metrics.
    """
    if training_args.should_save:
        acquire_output_lock(training_args.output_dir)  # held already after `prepare_run`: counted once more
    try:
        return _pretrain(data_args, training_args, model, image_processor, resume, base_model, two_view_augmentation,
                         tags, callbacks)
    finally:
        if training_args.should_save:
            release_output_lock(training_args.output_dir)
            release_output_lock(training_args.output_dir)  # that of `prepare_run`, if it took one


def finished_results(output_dir: str, step: int) -> dict[str, float] | None:
    """The recorded metrics (``all_results.json``) of the finished run in ``output_dir`` when its final records are
    those of step ``step`` (its ``trainer_state.json`` at that step and its ``train_results.json``), else None."""
    state = read_trainer_state(output_dir)
    path = os.path.join(output_dir, "all_results.json")
    if state is None or state.get("global_step") != step or not os.path.isfile(
            os.path.join(output_dir, "train_results.json")):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def _pretrain(data_args: ImageDataArguments, training_args: MAGMATrainingArguments, model: Any, image_processor: Any,
              resume: str | None, base_model: str | None, two_view_augmentation: dict[str, Any] | None,
              tags: Sequence[str], callbacks: Sequence[transformers.TrainerCallback]) -> dict[str, float]:
    splits = load_image_datasets(data_args, seed=training_args.data_seed or training_args.seed)
    image_column, label_column = resolve_columns(
        splits["train"], data_args.image_column_name, data_args.label_column_name
    )
    statistics = resolve_image_statistics(
        data_args, splits["train"], image_column, model.config.num_channels,
        (image_processor.image_mean, image_processor.image_std), training_args.data_seed or training_args.seed,
    )
    if statistics is not None:  # saved with the checkpoint's image processor (and encoder/'s)
        image_processor.image_mean, image_processor.image_std = statistics
        logger.info("Images normalised with mean %s and std %s (--image_mean / --image_std)",
                    [round(v, 6) for v in statistics[0]], [round(v, 6) for v in statistics[1]])
    if uses_float_pixels(model.config.num_channels):
        image_processor.do_rescale = False  # float arrays come scaled as docs/pretraining.md says, not / 255
    num_labels = num_classes(splits["train"], label_column) if label_column is not None else None
    if label_column is not None and num_labels is None and training_args.online_probe:
        logger.info("The label column %r is not a ClassLabel: the online probe is off", label_column)
        label_column = None
    train_data, eval_data, keywords = _data_and_collators(
        data_args, training_args, splits, model, image_processor, (image_column, label_column), two_view_augmentation
    )
    augmentation = keywords.pop("augmentation")
    do_eval = training_args.eval_strategy != "no" or training_args.do_eval
    trainer = MAGMATrainer(
        model=model,
        args=training_args,
        train_dataset=train_data,
        eval_dataset=eval_data if do_eval else None,
        **keywords,
        processing_class=image_processor,
        num_labels=num_labels if label_column is not None else None,
        callbacks=list(callbacks) or None,
    )
    dataset_name = data_args.dataset_name or data_args.train_dir or FASHION_MNIST_HUB_ID
    trainer.model_card_kwargs = {"dataset_name": dataset_name, "base_model": base_model, "augmentation": augmentation,
                                 "tags": list(tags)}
    trainer.run_data = data_description(data_args)

    train_result = trainer.train(resume_from_checkpoint=resume)
    metrics = dict(train_result.metrics)
    if trainer.trained_nothing:
        recorded = finished_results(training_args.output_dir, trainer.state.global_step)
        if recorded is not None:
            logger.warning(
                "%s holds this run, finished at step %d: nothing was trained, and its weights, results, "
                "trainer_state.json and model card are left as they are (raise --max_steps or --num_train_epochs "
                "to train further, or give a new --output_dir)", training_args.output_dir, trainer.state.global_step)
            return recorded
        # Killed after its last checkpoint: the final records are written, without the figures of a call that
        # trained nothing (a loss of 0, a runtime of a millisecond).
        for key in ("train_loss", "train_runtime", "train_samples_per_second", "train_steps_per_second"):
            metrics.pop(key, None)
    trainer.save_model()
    train_collator = trainer.data_collator
    skipped = getattr(train_collator, "collator", train_collator).skipped  # a TwoViewCollator wraps an ImageCollator
    metrics["train_skipped_images"] = skipped
    window = trainer.magma_window_used()
    if window is not None:  # the steps the term was on (decided during training for an `auto` e_st)
        metrics.update({f"magma_{key}": window[key] for key in ("start_step", "end_step", "decided_at_step")
                        if window.get(key) is not None})  # none when the term never came on
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


def make_parser(description: str | None = None, model_arguments: type = MAGMAModelArguments) -> MAGMAArgumentParser:
    """The command line: `ImageDataArguments`, `MAGMATrainingArguments` and ``model_arguments``, with a YAML
    ``--config``."""
    return MAGMAArgumentParser(
        (ImageDataArguments, MAGMATrainingArguments, model_arguments),
        description=description or __doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main(
    data_args: ImageDataArguments, training_args: MAGMATrainingArguments, model_args: MAGMAModelArguments
) -> dict[str, float]:
    """Pretrain, save (weights, config, image processor, model card), evaluate; returns the final metrics."""
    resume = prepare_run(data_args, training_args, "run_mae_magma")
    model, image_processor = load_model_and_image_processor(model_args)
    return pretrain(
        data_args, training_args, model, image_processor, resume=resume, base_model=model_args.model_name_or_path,
        tags=("mae", "magma"),
    )


def entry_point() -> None:
    """The `hf-magma-pretrain` console command."""
    run_program(lambda: main(*make_parser().parse_args_and_config()))
    close_process_group()


if __name__ == "__main__":
    entry_point()
