#!/usr/bin/env python
"""Pretrain a ViT-MAE with MAGMA (M-MAE; MU-MAE with --uniformity_weight 0.01; plain MAE with --magma_weight 0).

Examples:

    # the small CPU demo on the offline Fashion-MNIST
    python scripts/run_mae_magma.py --config recipes/fashion_mnist_cpu.yaml

    # a paper setting on one or more GPUs
    accelerate launch --config_file scripts/accelerate_configs/multi_gpu.yaml \\
        scripts/run_mae_magma.py --config recipes/cifar100_vit_tiny_m_mae.yaml

A run resumes automatically from the last checkpoint in --output_dir (or from --resume_from_checkpoint).
"""

from __future__ import annotations

import argparse
import logging
import sys

import datasets
import transformers

from hf_magma.cli import MAGMAArgumentParser
from hf_magma.data import (
    FASHION_MNIST_HUB_ID,
    ImageCollator,
    ImageDataArguments,
    ImageTransform,
    find_image_column,
    find_label_column,
    load_image_datasets,
    num_classes,
)
from hf_magma.model_card import create_model_card, summarize_training
from hf_magma.model_config import MAGMAModelArguments, load_model_and_image_processor
from hf_magma.trainer import MAGMATrainer, MAGMATrainingArguments, last_checkpoint

logger = logging.getLogger("run_mae_magma")


def main(
    script_args: ImageDataArguments, training_args: MAGMATrainingArguments, model_args: MAGMAModelArguments
) -> dict[str, float]:
    """Pretrain, save (weights, config, image processor, model card), evaluate; returns the final metrics."""
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    log_level = training_args.get_process_log_level()
    for name in ("run_mae_magma", "hf_magma"):
        logging.getLogger(name).setLevel(log_level)
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    if script_args.streaming and training_args.max_steps <= 0:
        raise ValueError("--streaming needs --max_steps: a streamed dataset has no known length")

    resume = training_args.resume_from_checkpoint
    if resume is None:
        resume = last_checkpoint(training_args.output_dir) if training_args.output_dir else None
        if resume is not None:
            logger.info("Resuming from the last checkpoint in the output folder: %s", resume)

    transformers.set_seed(training_args.seed)
    splits = load_image_datasets(script_args, seed=training_args.data_seed or training_args.seed)
    model, image_processor = load_model_and_image_processor(model_args)

    image_column = script_args.image_column_name or find_image_column(splits["train"])
    label_column = script_args.label_column_name or find_label_column(splits["train"])
    num_labels = num_classes(splits["train"], label_column) if label_column is not None else None
    if label_column is not None and num_labels is None and training_args.online_probe:
        logger.info("The label column %r is not a ClassLabel: the online probe is off", label_column)
        label_column = None
    channels = model.config.num_channels

    def collator(train: bool) -> ImageCollator:
        transform = ImageTransform.from_image_processor(image_processor, train=train, num_channels=channels)
        return ImageCollator(transform, image_column, label_column)

    trainer = MAGMATrainer(
        model=model,
        args=training_args,
        train_dataset=splits["train"],
        eval_dataset=splits.get("validation") if training_args.eval_strategy != "no" or training_args.do_eval else None,
        data_collator=collator(train=True),
        eval_data_collator=collator(train=False),
        processing_class=image_processor,
        num_labels=num_labels if label_column is not None else None,
    )

    train_result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model()
    metrics = dict(train_result.metrics)
    skipped = trainer.data_collator.skipped
    metrics["train_skipped_images"] = skipped
    if skipped:
        logger.warning("%d unreadable training images were skipped (named above)", skipped)
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    trainer.save_state()

    if "validation" in splits and (training_args.do_eval or training_args.eval_strategy != "no"):
        eval_metrics = trainer.evaluate(splits["validation"])
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
        metrics.update(eval_metrics)

    if trainer.is_world_process_zero():
        _write_model_card(trainer, script_args, model_args)
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset=script_args.dataset_name or FASHION_MNIST_HUB_ID, tags=["mae", "magma"])
    return metrics


def _write_model_card(trainer: MAGMATrainer, script_args: ImageDataArguments, model_args: MAGMAModelArguments) -> None:
    card = create_model_card(
        output_dir=trainer.args.output_dir,
        model_config=trainer.model.config,
        training_args=trainer.args,
        dataset_name=script_args.dataset_name or script_args.train_dir or FASHION_MNIST_HUB_ID,
        train_summary=summarize_training(trainer.state),
        base_model=model_args.model_name_or_path,
        save=True,
    )
    logger.info("Model card written to %s/README.md (%d characters)", trainer.args.output_dir, len(str(card)))


def make_parser() -> MAGMAArgumentParser:
    return MAGMAArgumentParser(
        (ImageDataArguments, MAGMATrainingArguments, MAGMAModelArguments),
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
