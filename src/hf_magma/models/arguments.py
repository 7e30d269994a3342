"""Model arguments of the pretraining scripts and how to build the model: `MAGMAModelArguments` (a ViT-MAE) and
`SSLModelArguments` (a ViT for SimCLR / VICReg)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from transformers import AutoConfig, ViTConfig, ViTMAEConfig
from transformers.image_processing_utils import BaseImageProcessor
from transformers.utils import is_torchvision_available

from ..losses.ssl import SSL_OBJECTIVES
from ..utils.checks import check_number, named_weights_errors
from .mae import ViTMAEWithMAGMA
from .ssl import ViTForSSL

logger = logging.getLogger(__name__)


def _layer_list(value: str | int | list[int] | None) -> list[int] | None:
    """Block indices from ``"8,10"``, ``8`` or a YAML list ``[8, 10]``."""
    if value is None or value == "":
        return None
    items = list(value) if isinstance(value, (list, tuple)) else str(value).replace(" ", "").split(",")
    try:
        if any(isinstance(v, (bool, float)) for v in items):
            raise ValueError
        return [int(v) for v in items if v != ""]
    except (TypeError, ValueError):
        raise ValueError(
            f"`magma_reference_layers` must be block indices, comma-separated (8,10) or a YAML list ([8, 10]), "
            f"got {value!r}"
        ) from None


@dataclass
class ModelSourceArguments:
    """Where the model comes from (a checkpoint, or a new one from a config) and the layers MAGMA reads."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A checkpoint (Hub id or path) to continue from: a ViT-MAE (e.g. facebook/vit-mae-base) for "
                  "MAE pretraining, a ViT for SimCLR/VICReg. Without it a new model is initialised from "
                  "--config_name / --config_overrides."},
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
    num_channels: int | None = field(
        default=None,
        metadata={"help": "The images' channels (e.g. 4 for RGB + near infrared): a new model's num_channels; a "
                  "checkpoint's must match. 1 and 3 read 8-bit grey / RGB images, any other count float arrays "
                  "(TIFF files, array columns; see docs/pretraining.md). Default: the config's (3)."},
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where to cache downloaded models."})
    model_revision: str = field(default="main", metadata={"help": "The model revision (branch, tag or commit)."})
    magma_reference_layers: str | None = field(
        default=None,
        metadata={"help": "Comma-separated 0-based encoder blocks used as MAGMA references (a list in a YAML "
                  "--config; default: the penultimate block)."},
    )
    magma_target_layer: int | None = field(
        default=None, metadata={"help": "The 0-based encoder block MAGMA regularises (default: the last)."}
    )

    def __post_init__(self) -> None:
        if self.config_overrides is not None and self.model_name_or_path is not None:
            raise ValueError("`config_overrides` can only be used when training from scratch (no model_name_or_path)")
        _layer_list(self.magma_reference_layers)
        if self.num_channels is not None:
            check_number("--num_channels", self.num_channels, sign="positive", integer=True)


@dataclass
class MAGMAModelArguments(ModelSourceArguments):
    """The model options of transformers' ``run_mae.py`` plus where the MAGMA term reads (parsed by
    HfArgumentParser)."""

    mask_ratio: float = field(default=0.75, metadata={"help": "The ratio of masked patches."})
    norm_pix_loss: bool = field(
        default=True, metadata={"help": "Reconstruct per-patch normalised pixels (MAE's default for pretraining)."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.mask_ratio < 1:
            raise ValueError(f"`mask_ratio` must be in (0, 1), got {self.mask_ratio}")
        # Both are set from their own options after the overrides, so a value given in the overrides would be lost.
        keys = [item.split("=", 1)[0].strip() for item in (self.config_overrides or "").split(",")]
        for key in ("mask_ratio", "norm_pix_loss"):
            if key in keys:
                raise ValueError(
                    f"--config_overrides sets {key}, which its own option --{key} sets (default "
                    f"{getattr(type(self), key)}): drop it from --config_overrides and pass --{key} instead"
                )


# (name, model_type) of the configs the loaders build from.
_CONFIG_KINDS = {ViTMAEConfig: ("ViT-MAE", "vit_mae"), ViTConfig: ("ViT", "vit")}


def _load_config(
    model_args: ModelSourceArguments,
    expected_config_class: type[ViTMAEConfig] | type[ViTConfig],
    what: str,
) -> ViTMAEConfig | ViTConfig:
    """The config to build from (``config_name``, else the checkpoint's, else a new one) with the arguments'
    ``config_overrides`` and MAGMA layers applied; ``what`` names the training in the wrong-type error."""
    name, model_type = _CONFIG_KINDS[expected_config_class]
    source = model_args.config_name or model_args.model_name_or_path
    if source is not None:
        config = AutoConfig.from_pretrained(source, cache_dir=model_args.cache_dir, revision=model_args.model_revision)
        if not isinstance(config, expected_config_class):
            raise ValueError(
                f"{source} is a {type(config).__name__} (model_type {config.model_type!r}); {what} "
                f"needs a {name} config (model_type {model_type!r})"
            )
    else:
        config = expected_config_class()
        logger.info("Training a new %s from scratch (%s)", name, what)
    if model_args.config_overrides:
        config.update_from_string(model_args.config_overrides)
    channels = model_args.num_channels
    if channels is not None and channels != config.num_channels:
        if model_args.model_name_or_path is not None or "num_channels" in (model_args.config_overrides or ""):
            raise ValueError(
                f"--num_channels {channels} differs from the {config.num_channels} channels of "
                f"{model_args.model_name_or_path or '--config_overrides'}: drop one of them"
            )
        config.num_channels = channels
    references = _layer_list(model_args.magma_reference_layers)
    if references is not None:
        config.magma_reference_layers = references
    if model_args.magma_target_layer is not None:
        config.magma_target_layer = model_args.magma_target_layer
    return config


def load_model_and_image_processor(model_args: MAGMAModelArguments) -> tuple[ViTMAEWithMAGMA, BaseImageProcessor]:
    """Build the `ViTMAEWithMAGMA` (from a checkpoint or new) and an image processor at the config's image size."""
    common = {"cache_dir": model_args.cache_dir, "revision": model_args.model_revision}
    config = _load_config(model_args, ViTMAEConfig, "MAGMA pretraining")
    config.mask_ratio = model_args.mask_ratio
    config.norm_pix_loss = model_args.norm_pix_loss

    if model_args.model_name_or_path is not None:
        with named_weights_errors(model_args.model_name_or_path, "--model_name_or_path"):
            model = ViTMAEWithMAGMA.from_pretrained(model_args.model_name_or_path, config=config, **common)
    else:
        model = ViTMAEWithMAGMA(config)

    return model, _image_processor_of(model_args, config.image_size)


def vit_image_processor_class() -> type[BaseImageProcessor]:
    """ViT's image processor: the torchvision backend when installed, else the PIL one (same settings and files)."""
    import transformers

    return transformers.ViTImageProcessor if is_torchvision_available() else transformers.ViTImageProcessorPil


def load_image_processor(
    source: str | os.PathLike | None,
    image_size: int | None = None,
    *,
    required: bool = False,
    revision: str | None = None,
    cache_dir: str | None = None,
    token: str | bool | None = None,
) -> BaseImageProcessor:
    """The image processor saved with checkpoint ``source`` (a path or Hub id), else ViT's defaults.

    With ``image_size`` (the model config's) the processor's size is set to it: the transforms follow the model's
    resolution, whatever the processor was saved with. ``required=True`` (a processor named explicitly) turns a
    source without one into a ``ValueError`` instead of falling back to ViT's defaults.
    """
    processor = None
    if source is not None:
        try:
            processor = vit_image_processor_class().from_pretrained(
                source, revision=revision, cache_dir=cache_dir, token=token
            )
        except OSError as err:
            if required:
                raise ValueError(
                    f"{os.fspath(source)!r} has no image processor (preprocessor_config.json)"
                ) from err
            logger.info("%s has no image processor; using ViT's defaults", os.fspath(source))
    if processor is None:
        processor = vit_image_processor_class()()
    if image_size is not None:
        processor.size = {"height": image_size, "width": image_size}
    return processor


def _image_processor_of(model_args: ModelSourceArguments, image_size: int) -> BaseImageProcessor:
    return load_image_processor(
        model_args.image_processor_name or model_args.model_name_or_path,
        image_size,
        required=model_args.image_processor_name is not None,
        revision=model_args.model_revision,
        cache_dir=model_args.cache_dir,
    )


@dataclass
class SSLModelArguments(ModelSourceArguments):
    """Which ViT to pretrain with SimCLR or VICReg (new, or continued from a checkpoint), its projector and MAGMA."""

    objective: str = field(default="simclr", metadata={"help": "The self-supervised objective: simclr or vicreg."})
    projector_hidden_size: int | None = field(default=None, metadata={"help": "Projector width (default 2048)."})
    projector_output_size: int | None = field(
        default=None, metadata={"help": "Projector output size (default 256 for SimCLR, 2048 for VICReg)."}
    )
    projector_num_layers: int | None = field(
        default=None, metadata={"help": "Projector linear layers (default 2 for SimCLR, 3 for VICReg)."}
    )
    representation_pooling: str | None = field(
        default=None, metadata={"help": "What the projector reads: cls (default) or mean (of the patch tokens)."}
    )
    simclr_temperature: float | None = field(default=None, metadata={"help": "NT-Xent temperature (default 0.2)."})
    vicreg_sim_weight: float | None = field(default=None, metadata={"help": "VICReg invariance weight (default 25)."})
    vicreg_var_weight: float | None = field(default=None, metadata={"help": "VICReg variance weight (default 25)."})
    vicreg_cov_weight: float | None = field(default=None, metadata={"help": "VICReg covariance weight (default 1)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.objective not in SSL_OBJECTIVES:
            raise ValueError(f"`objective` must be one of {SSL_OBJECTIVES}, got {self.objective!r}")


_SSL_CONFIG_FIELDS = (
    "projector_hidden_size", "projector_output_size", "projector_num_layers", "representation_pooling",
    "simclr_temperature", "vicreg_sim_weight", "vicreg_var_weight", "vicreg_cov_weight",
)


def load_ssl_model_and_image_processor(model_args: SSLModelArguments) -> tuple[ViTForSSL, BaseImageProcessor]:
    """Build the `ViTForSSL` (from a ViT checkpoint or new) and an image processor at the config's image size."""
    common = {"cache_dir": model_args.cache_dir, "revision": model_args.model_revision}
    config = _load_config(model_args, ViTConfig, "SimCLR/VICReg pretraining")
    config.ssl_objective = model_args.objective
    for name in _SSL_CONFIG_FIELDS:
        if getattr(model_args, name) is not None:
            setattr(config, name, getattr(model_args, name))

    if model_args.model_name_or_path is not None:
        with named_weights_errors(model_args.model_name_or_path, "--model_name_or_path"):
            model = ViTForSSL.from_pretrained(model_args.model_name_or_path, config=config, **common)
    else:
        model = ViTForSSL(config)
    return model, _image_processor_of(model_args, config.image_size)
