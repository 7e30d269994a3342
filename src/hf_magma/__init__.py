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
from .model_config import MAGMAModelArguments, load_model_and_image_processor
from .modeling import ViTMAEWithMAGMA, ViTMAEWithMAGMAOutput, all_gather_with_grad, resolve_magma_config
from .trainer import MAGMATrainer, MAGMATrainingArguments, OnlineLinearProbe
from .visualize import plot_attention_maps, plot_key_pca, plot_pacmap, plot_training_curves

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
    "ViTMAEWithMAGMA",
    "ViTMAEWithMAGMAOutput",
    "all_gather_with_grad",
    "find_image_column",
    "find_label_column",
    "load_fashion_mnist",
    "load_image_datasets",
    "load_model_and_image_processor",
    "magma_loss",
    "plot_attention_maps",
    "plot_key_pca",
    "plot_pacmap",
    "plot_training_curves",
    "pool_hidden_state",
    "resolve_magma_config",
    "uniformity_loss",
]
