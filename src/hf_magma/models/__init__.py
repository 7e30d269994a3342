"""The models (transformers classes that compute their objective with MAGMA), how they are built from arguments,
and a ViT-MAE's encoder exported as a plain `vit` checkpoint.

- `mae`: `ViTMAEWithMAGMA` (M-MAE, MU-MAE, U-MAE, MAE), `resolve_magma_config`;
- `ssl`: `ViTForSSL` (M-SimCLR, M-VICReg), `resolve_ssl_config`;
- `arguments`: `MAGMAModelArguments`, `SSLModelArguments`, `load_model_and_image_processor`, ...;
- `export`: `save_encoder`, `vit_encoder_from` (the ``encoder/`` subfolder of every checkpoint).
"""

from typing import TYPE_CHECKING

from ..utils.lazy import lazy_exports

_EXPORTS = {
    "mae": ('ViTMAEWithMAGMA', 'ViTMAEWithMAGMAOutput', 'resolve_magma_config'),
    "ssl": ('ViTForSSL', 'ViTForSSLOutput', 'resolve_ssl_config'),
    "arguments": ('MAGMAModelArguments', 'SSLModelArguments', 'load_image_processor', 'load_model_and_image_processor',
                  'load_ssl_model_and_image_processor'),
    "export": ('ENCODER_SUBFOLDER', 'save_encoder', 'vit_encoder_from'),
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS, loaded=globals())

if TYPE_CHECKING:
    from .arguments import (
        MAGMAModelArguments,
        SSLModelArguments,
        load_image_processor,
        load_model_and_image_processor,
        load_ssl_model_and_image_processor,
    )
    from .export import ENCODER_SUBFOLDER, save_encoder, vit_encoder_from
    from .mae import ViTMAEWithMAGMA, ViTMAEWithMAGMAOutput, resolve_magma_config
    from .ssl import ViTForSSL, ViTForSSLOutput, resolve_ssl_config
