"""Pretrain a ViT with SimCLR or VICReg plus MAGMA (M-SimCLR, M-VICReg; the plain objective with --magma_weight 0).

Each batch holds two SimCLR-style views of its images (random resized crop, flip, colour jitter, grayscale,
blur, with kornia); MAGMA regularises the first view's block outputs. Data, schedule, checkpoints, model card and
Hub pushes are those of run_mae_magma.py. Every checkpoint holds ``encoder/``, the backbone as a plain `vit`
checkpoint for `pipeline("image-feature-extraction")` and `AutoModel` (``subfolder="encoder"``).

Installed as the `hf-magma-pretrain-ssl` command; `python scripts/run_ssl_magma.py` and
`python -m hf_magma.cli.run_ssl_magma` are the same program.

Examples:

    # the small CPU demo on the offline Fashion-MNIST
    python scripts/run_ssl_magma.py --objective vicreg --output_dir outputs/m-vicreg \\
        --config_overrides \\
        "hidden_size=64,num_hidden_layers=4,num_attention_heads=2,intermediate_size=128,image_size=28,patch_size=4" \\
        --projector_hidden_size 256 --projector_output_size 256 --max_steps 200 --magma_start_step 20 --magma_steps 180

    # on one or more GPUs
    accelerate launch scripts/run_ssl_magma.py --objective simclr --dataset_name uoft-cs/cifar100 ...

A run resumes automatically from the last checkpoint in --output_dir (or from --resume_from_checkpoint).
"""

from __future__ import annotations

from ..data.arguments import ImageDataArguments
from ..models.arguments import SSLModelArguments, load_ssl_model_and_image_processor
from ..training.training_args import MAGMATrainingArguments
from ..utils.distributed import close_process_group
from .parser import MAGMAArgumentParser, run_program
from .run_mae_magma import make_parser as pretraining_parser
from .run_mae_magma import prepare_run, pretrain


def make_parser(description: str | None = None) -> MAGMAArgumentParser:
    """The command line: `ImageDataArguments`, `MAGMATrainingArguments`, `SSLModelArguments`, a YAML ``--config``."""
    return pretraining_parser(description or __doc__, SSLModelArguments)


def main(
    data_args: ImageDataArguments, training_args: MAGMATrainingArguments, model_args: SSLModelArguments
) -> dict[str, float]:
    """Pretrain `ViTForSSL` on two views of every image, save it, evaluate; returns the final metrics."""
    resume = prepare_run(data_args, training_args, "run_ssl_magma")
    model, image_processor = load_ssl_model_and_image_processor(model_args)
    return pretrain(
        data_args, training_args, model, image_processor, resume=resume, base_model=model_args.model_name_or_path,
        two_view_augmentation={}, tags=(model_args.objective, "magma"),
    )


def entry_point() -> None:
    """The `hf-magma-pretrain-ssl` console command."""
    run_program(lambda: main(*make_parser().parse_args_and_config()))
    close_process_group()


if __name__ == "__main__":
    entry_point()
