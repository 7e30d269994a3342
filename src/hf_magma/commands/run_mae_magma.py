"""Pretrain a ViT-MAE with MAGMA (M-MAE; MU-MAE with --uniformity_weight 0.01; plain MAE with --magma_weight 0).

Installed as the `hf-magma-pretrain` command; `python scripts/run_mae_magma.py` is the same program.

Examples:

    # the small CPU demo on the offline Fashion-MNIST
    python scripts/run_mae_magma.py --config recipes/fashion_mnist_cpu.yaml

    # a paper setting on one or more GPUs
    accelerate launch --config_file scripts/accelerate_configs/multi_gpu.yaml \\
        scripts/run_mae_magma.py --config recipes/cifar100/m_mae.yaml

A run resumes automatically from the last checkpoint in --output_dir (or from --resume_from_checkpoint).
"""

from __future__ import annotations

from ..cli import pretraining as command
from ..cli.parser import MAGMAArgumentParser

main = command.main_mae


def make_parser() -> MAGMAArgumentParser:
    return command.make_parser(__doc__)


def entry_point() -> None:
    """The `hf-magma-pretrain` console command."""
    main(*make_parser().parse_args_and_config())
