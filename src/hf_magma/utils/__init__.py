"""What every layer shares: checks of settings that name the setting, the distributed helpers, lazy re-exports."""

from typing import TYPE_CHECKING

from .lazy import lazy_exports

_EXPORTS = {
    "checks": ('check_fraction', 'check_fractions', 'check_layer_choice', 'check_non_negative', 'check_number',
               'named_weights_errors'),
    "distributed": ('all_gather_with_grad', 'rank_and_world_size'),
    "lazy": ('lazy_exports',),
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS, loaded=globals())

if TYPE_CHECKING:
    from .checks import (
        check_fraction,
        check_fractions,
        check_layer_choice,
        check_non_negative,
        check_number,
        named_weights_errors,
    )
    from .distributed import all_gather_with_grad, rank_and_world_size
    from .lazy import lazy_exports
