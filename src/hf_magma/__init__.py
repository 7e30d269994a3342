"""hf-magma: MAGMA manifold regularisation for Masked Autoencoders, native to Hugging Face transformers."""

from .augmentation import TwoViewAugmentation, TwoViewCollator
from .data import (
    ImageCollator,
    ImageDataArguments,
    ImageTransform,
    find_image_column,
    find_label_column,
    load_fashion_mnist,
    load_image_datasets,
)
from .losses import MAGMARegularizer, magma_loss, pool_hidden_state, uniformity_loss
from .model_config import MAGMAModelArguments, load_model_and_image_processor
from .modeling import ViTMAEWithMAGMA, ViTMAEWithMAGMAOutput, all_gather_with_grad, resolve_magma_config
from .modeling_ssl import ViTForSSL, ViTForSSLOutput, resolve_ssl_config
from .ssl import VICRegLossOutput, nt_xent_loss, vicreg_loss
from .trainer import MAGMATrainer, MAGMATrainingArguments, OnlineLinearProbe, last_checkpoint

__version__ = "0.1.0"

__all__ = [
    "ImageCollator",
    "ImageDataArguments",
    "ImageTransform",
    "MAGMAModelArguments",
    "MAGMARegularizer",
    "MAGMATrainer",
    "MAGMATrainingArguments",
    "OnlineLinearProbe",
    "TwoViewAugmentation",
    "TwoViewCollator",
    "VICRegLossOutput",
    "ViTForSSL",
    "ViTForSSLOutput",
    "ViTMAEWithMAGMA",
    "ViTMAEWithMAGMAOutput",
    "all_gather_with_grad",
    "find_image_column",
    "find_label_column",
    "last_checkpoint",
    "load_fashion_mnist",
    "load_image_datasets",
    "load_model_and_image_processor",
    "magma_loss",
    "nt_xent_loss",
    "pool_hidden_state",
    "resolve_magma_config",
    "resolve_ssl_config",
    "uniformity_loss",
    "vicreg_loss",
]
