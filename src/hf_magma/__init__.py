"""hf-magma: MAGMA manifold regularisation for Masked Autoencoders, native to Hugging Face transformers."""

from .hub import HubPushMixin, push_model_card
from .losses import MAGMARegularizer, magma_loss, pool_hidden_state, uniformity_loss
from .model_card import add_evaluation_results, add_figures, create_model_card, summarize_training
from .modeling import ViTMAEWithMAGMA, ViTMAEWithMAGMAOutput, resolve_magma_config

__version__ = "0.1.0"

__all__ = [
    "HubPushMixin",
    "MAGMARegularizer",
    "ViTMAEWithMAGMA",
    "ViTMAEWithMAGMAOutput",
    "add_evaluation_results",
    "add_figures",
    "create_model_card",
    "magma_loss",
    "pool_hidden_state",
    "push_model_card",
    "resolve_magma_config",
    "summarize_training",
    "uniformity_loss",
]
