"""`MAGMAModelArguments`: which ViT-MAE to pretrain (new, or continued from a checkpoint) and how to build it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from transformers import AutoConfig, ViTImageProcessor, ViTMAEConfig

from .modeling import ViTMAEWithMAGMA

logger = logging.getLogger(__name__)


def _layer_list(value: str | None) -> list[int] | None:
    if value is None or value == "":
        return None
    try:
        return [int(v) for v in str(value).replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise ValueError(f"`magma_reference_layers` must be comma-separated block indices, got {value!r}") from None


@dataclass
class MAGMAModelArguments:
    """The model options of transformers' ``run_mae.py`` plus where the MAGMA term reads (parsed by HfArgumentParser)."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A ViT-MAE checkpoint (Hub id or path, e.g. facebook/vit-mae-base) to continue from. "
                  "Without it a new model is initialised from --config_name / --config_overrides."},
    )
    config_name: str | None = field(
        default=None, metadata={"help": "A config (Hub id or path) for a new model, if not the checkpoint's."}
    )
    config_overrides: str | None = field(
        default=None,
        metadata={"help": "Config settings overriding the defaults when training from scratch, e.g. "
                  "'hidden_size=192,num_hidden_layers=12,num_attention_heads=3,image_size=32,patch_size=4'."},
    )
    image_processor_name: str | None = field(
        default=None, metadata={"help": "An image processor (Hub id or path) whose mean/std normalise the images."}
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where to cache downloaded models."})
    model_revision: str = field(default="main", metadata={"help": "The model revision (branch, tag or commit)."})
    mask_ratio: float = field(default=0.75, metadata={"help": "The ratio of masked patches."})
    norm_pix_loss: bool = field(
        default=True, metadata={"help": "Reconstruct per-patch normalised pixels (MAE's default for pretraining)."}
    )
    magma_reference_layers: str | None = field(
        default=None,
        metadata={"help": "Comma-separated 0-based encoder blocks used as MAGMA references (default: the "
                  "penultimate block)."},
    )
    magma_target_layer: int | None = field(
        default=None, metadata={"help": "The 0-based encoder block MAGMA regularises (default: the last)."}
    )

    def __post_init__(self) -> None:
        if not 0 < self.mask_ratio < 1:
            raise ValueError(f"`mask_ratio` must be in (0, 1), got {self.mask_ratio}")
        if self.config_overrides is not None and self.model_name_or_path is not None:
            raise ValueError("`config_overrides` can only be used when training from scratch (no model_name_or_path)")
        _layer_list(self.magma_reference_layers)


def load_model_and_image_processor(model_args: MAGMAModelArguments) -> tuple[ViTMAEWithMAGMA, ViTImageProcessor]:
    """Build the `ViTMAEWithMAGMA` (from a checkpoint or new) and an image processor at the config's image size."""
    common = {"cache_dir": model_args.cache_dir, "revision": model_args.model_revision}
    source = model_args.config_name or model_args.model_name_or_path
    if source is not None:
        config = AutoConfig.from_pretrained(source, **common)
        if not isinstance(config, ViTMAEConfig):
            raise ValueError(
                f"{source} is a {type(config).__name__} (model_type {config.model_type!r}); MAGMA pretraining "
                "needs a ViT-MAE config (model_type 'vit_mae')"
            )
    else:
        config = ViTMAEConfig()
        logger.info("Training a new ViT-MAE from scratch")
    if model_args.config_overrides:
        config.update_from_string(model_args.config_overrides)
    config.mask_ratio = model_args.mask_ratio
    config.norm_pix_loss = model_args.norm_pix_loss
    references = _layer_list(model_args.magma_reference_layers)
    if references is not None:
        config.magma_reference_layers = references
    if model_args.magma_target_layer is not None:
        config.magma_target_layer = model_args.magma_target_layer

    if model_args.model_name_or_path is not None:
        model = ViTMAEWithMAGMA.from_pretrained(model_args.model_name_or_path, config=config, **common)
    else:
        model = ViTMAEWithMAGMA(config)

    processor_source = model_args.image_processor_name or model_args.model_name_or_path
    processor = None
    if processor_source is not None:
        try:
            processor = ViTImageProcessor.from_pretrained(processor_source, **common)
        except OSError:
            if model_args.image_processor_name is not None:
                raise
            logger.info("%s has no image processor; using ViT's defaults", processor_source)
    if processor is None:
        processor = ViTImageProcessor()
    # The transforms follow the model's resolution, whatever the processor was saved with.
    processor.size = {"height": config.image_size, "width": config.image_size}
    return model, processor
