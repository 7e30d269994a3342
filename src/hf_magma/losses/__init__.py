"""The objectives, on plain tensors (torch only): MAGMA, U-MAE's uniformity term, SimCLR's and VICReg's losses,
and the pooling of a layer's tokens that MAGMA reads.

- `magma`: `magma_loss`, `MAGMARegularizer` (the term on any transformers model's ``hidden_states``);
- `uniformity`: `uniformity_loss`;
- `ssl`: `nt_xent_loss`, `vicreg_loss`;
- `pooling`: `pool_hidden_state` and the poolings' names.
"""

from typing import TYPE_CHECKING

from ..utils.lazy import lazy_exports

_EXPORTS = {
    "magma": ('MAGMARegularizer', 'magma_loss'),
    "uniformity": ('uniformity_loss',),
    "ssl": ('SSL_OBJECTIVES', 'VICRegLossOutput', 'nt_xent_loss', 'vicreg_loss'),
    "pooling": ('HIDDEN_STATE_POOLINGS', 'IMAGE_POOLINGS', 'pool_hidden_state'),
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS, loaded=globals())

if TYPE_CHECKING:
    from .magma import MAGMARegularizer, magma_loss
    from .pooling import HIDDEN_STATE_POOLINGS, IMAGE_POOLINGS, pool_hidden_state
    from .ssl import SSL_OBJECTIVES, VICRegLossOutput, nt_xent_loss, vicreg_loss
    from .uniformity import uniformity_loss
