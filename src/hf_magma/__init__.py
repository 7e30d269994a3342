"""hf-magma: MAGMA manifold regularisation for Masked Autoencoders, native to Hugging Face transformers."""

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
from .modeling import ViTMAEWithMAGMA, ViTMAEWithMAGMAOutput, resolve_magma_config

__version__ = "0.1.0"

__all__ = [
    "ImageCollator",
    "ImageDataArguments",
    "ImageTransform",
    "MAGMARegularizer",
    "ViTMAEWithMAGMA",
    "ViTMAEWithMAGMAOutput",
    "find_image_column",
    "find_label_column",
    "load_fashion_mnist",
    "load_image_datasets",
    "magma_loss",
    "pool_hidden_state",
    "resolve_magma_config",
    "uniformity_loss",
]
