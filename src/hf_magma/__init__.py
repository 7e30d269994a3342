"""hf-magma: MAGMA manifold regularisation for Masked Autoencoders, native to Hugging Face transformers."""

from .losses import MAGMARegularizer, magma_loss, pool_hidden_state, uniformity_loss
from .modeling import ViTMAEWithMAGMA, ViTMAEWithMAGMAOutput, resolve_magma_config
from .visualize import plot_attention_maps, plot_key_pca, plot_pacmap, plot_training_curves

__version__ = "0.1.0"

__all__ = [
    "MAGMARegularizer",
    "ViTMAEWithMAGMA",
    "ViTMAEWithMAGMAOutput",
    "magma_loss",
    "plot_attention_maps",
    "plot_key_pca",
    "plot_pacmap",
    "plot_training_curves",
    "pool_hidden_state",
    "resolve_magma_config",
    "uniformity_loss",
]
