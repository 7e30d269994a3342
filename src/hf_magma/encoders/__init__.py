"""ViT encoders for frozen features and figures, shared by `hf_magma.evaluation` and `hf_magma.visualize`.

- `loading`: `load_encoder` (any ViT / ViT-MAE checkpoint or model);
- `forward`: `run_unmasked` (every patch, in order), `encode` (pooled features of a batch), `patch_grid`;
- `features`: `extract_features` (of a dataset).
"""

from typing import TYPE_CHECKING

from ..utils.lazy import lazy_exports

_EXPORTS = {
    "loading": ('SUPPORTED_MODEL_TYPES', 'load_encoder'),
    "forward": ('encode', 'patch_grid', 'run_unmasked'),
    "features": ('extract_features',),
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS, loaded=globals())

if TYPE_CHECKING:
    from .features import extract_features
    from .forward import encode, patch_grid, run_unmasked
    from .loading import SUPPORTED_MODEL_TYPES, load_encoder
