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

from hf_magma.cli import MAGMAArgumentParser
from hf_magma.data import ImageDataArguments
from hf_magma.model_config import MAGMAModelArguments, load_model_and_image_processor
from hf_magma.cli.pretraining import prepare_run, pretrain
from hf_magma.trainer import MAGMATrainingArguments


def main(
    script_args: ImageDataArguments, training_args: MAGMATrainingArguments, model_args: MAGMAModelArguments
) -> dict[str, float]:
    """Pretrain, save (weights, config, image processor, model card), evaluate; returns the final metrics."""
    resume = prepare_run(script_args, training_args, "run_mae_magma")
    model, image_processor = load_model_and_image_processor(model_args)
    return pretrain(
        script_args, training_args, model, image_processor, resume=resume, base_model=model_args.model_name_or_path,
        tags=("mae", "magma"),
    )


def make_parser() -> MAGMAArgumentParser:
    return MAGMAArgumentParser(
        (ImageDataArguments, MAGMATrainingArguments, MAGMAModelArguments),
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
