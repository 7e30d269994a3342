"""Pretraining: `MAGMATrainingArguments` beside `MAGMATrainer` (the MAGMA schedule, per-term logging, the online
probe, exact resume), what guards a run's output folder, and Hub pushes that never stop training.

- `training_args`: `MAGMATrainingArguments`; `trainer`: `MAGMATrainer`; `online_probe`: `OnlineLinearProbe`;
- `run_guard`: `RunGuardMixin`, `check_output_dir`; `hub_push`: `HubPushMixin`;
- `integrations`: the optional packages that arguments ask for.
"""

from typing import TYPE_CHECKING

from ..utils.lazy import lazy_exports

_EXPORTS = {
    "training_args": ('MAGMATrainingArguments',),
    "trainer": ('MAGMATrainer',),
    "online_probe": ('OnlineLinearProbe',),
    "run_guard": ('RunGuardMixin', 'check_output_dir'),
    "hub_push": ('HubPushMixin',),
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS, loaded=globals())

if TYPE_CHECKING:
    from .hub_push import HubPushMixin
    from .online_probe import OnlineLinearProbe
    from .run_guard import RunGuardMixin, check_output_dir
    from .trainer import MAGMATrainer
    from .training_args import MAGMATrainingArguments
