"""What a run leaves behind and what reads it back: model cards (rendered, then given results and figures), Hub
pushes of a card, checkpoints' trainer state and log history, and the names of the logged metrics and figures.
Training writes them; evaluation and figures read and extend them.

- `model_card`: `create_model_card`, `summarize_training`; `card_results`: `add_evaluation_results`, `add_figures`;
- `hub`: `push_model_card`;
- `trainer_state`: `last_checkpoint`, `find_trainer_state`, `load_log_history`;
- `logged_metrics`: `LOGGED_METRICS`; `figure_options`: `FIGURES`, `parse_figures`.
"""

from typing import TYPE_CHECKING

from ..utils.lazy import lazy_exports

_EXPORTS = {
    "model_card": ('create_model_card', 'summarize_training'),
    "card_results": ('add_evaluation_results', 'add_figures'),
    "hub": ('push_model_card',),
    "trainer_state": ('find_trainer_state', 'last_checkpoint', 'load_log_history'),
    "logged_metrics": ('LOGGED_METRICS',),
    "figure_options": ('FIGURES', 'parse_figures'),
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS, loaded=globals())

if TYPE_CHECKING:
    from .card_results import add_evaluation_results, add_figures
    from .figure_options import FIGURES, parse_figures
    from .hub import push_model_card
    from .logged_metrics import LOGGED_METRICS
    from .model_card import create_model_card, summarize_training
    from .trainer_state import find_trainer_state, last_checkpoint, load_log_history
