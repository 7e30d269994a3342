"""hf-magma: MAGMA manifold regularisation for Masked Autoencoders, native to Hugging Face transformers."""

from .augmentation import TwoViewAugmentation, TwoViewCollator
from .losses import MAGMARegularizer, magma_loss, pool_hidden_state, uniformity_loss
from .modeling import ViTMAEWithMAGMA, ViTMAEWithMAGMAOutput, resolve_magma_config
from .modeling_ssl import ViTForSSL, ViTForSSLOutput, resolve_ssl_config
from .ssl import VICRegLossOutput, nt_xent_loss, vicreg_loss

__version__ = "0.1.0"

__all__ = [
    "MAGMARegularizer",
    "TwoViewAugmentation",
    "TwoViewCollator",
    "VICRegLossOutput",
    "ViTForSSL",
    "ViTForSSLOutput",
    "ViTMAEWithMAGMA",
    "ViTMAEWithMAGMAOutput",
    "magma_loss",
    "nt_xent_loss",
    "pool_hidden_state",
    "resolve_magma_config",
    "resolve_ssl_config",
    "uniformity_loss",
    "vicreg_loss",
]
