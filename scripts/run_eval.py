#!/usr/bin/env python
"""Evaluate a checkpoint's frozen features the paper's way: k-NN and linear probe (optionally on 1/5/10/100% of
the labels), and optionally full fine-tuning. Writes eval_results.json and records the results in the model card.

Examples:

    # a local checkpoint on the offline Fashion-MNIST
    python scripts/run_eval.py --model_name_or_path outputs/m-mae-fmnist --output_dir outputs/eval

    # the model-free floor: the same protocol on the normalised pixels (28 x 28, one channel)
    python scripts/run_eval.py --pixels --output_dir results/fashion_mnist/pixels

    # a Hub checkpoint on CIFAR-100, low-label regime, card pushed back to the Hub
    python scripts/run_eval.py --model_name_or_path user/m-mae-cifar100 --dataset_name uoft-cs/cifar100 \\
        --label_fractions 0.01 0.05 0.1 1 --output_dir outputs/eval --push_to_hub
"""

from __future__ import annotations

import argparse
import logging

from transformers import TrainingArguments

from hf_magma.cli import MAGMAArgumentParser, setup_logging
from hf_magma.data import ImageDataArguments
from hf_magma.evaluation import EvaluationArguments, run_evaluation
from hf_magma.pixel_floor import run_pixel_evaluation

logger = logging.getLogger("run_eval")


def main(
    script_args: EvaluationArguments, data_args: ImageDataArguments, training_args: TrainingArguments
) -> dict[str, float]:
    """Evaluate, write ``eval_results.json`` and the model card, print a table; returns the results."""
    setup_logging("run_eval", training_args.get_process_log_level())
    if script_args.pixels:
        return run_pixel_evaluation(script_args, data_args, training_args)["results"]
    return run_evaluation(script_args, data_args, training_args)


def make_parser() -> MAGMAArgumentParser:
    return MAGMAArgumentParser(
        (EvaluationArguments, ImageDataArguments, TrainingArguments),
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
