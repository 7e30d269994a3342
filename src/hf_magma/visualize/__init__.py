"""Figures that compare checkpoints: PaCMAP with the Davies-Bouldin index, key PCA per layer, last-layer attention
maps and training curves (the paper's Figs. 2, 4, 5 and 6).

Each ``plot_*`` function writes one PNG with one panel (or one row of panels) per checkpoint and returns the
numbers it drew, so they can be checked or reported. matplotlib and pacmap are imported only when a figure is
drawn (``pip install 'hf-magma[viz]'``); figures are rendered with matplotlib's Agg canvas without touching
pyplot's global state.

- `pacmap`: `plot_pacmap`, `pacmap_embedding`, `select_classes`;
- `attention`: `plot_key_pca`, `key_pca_maps`, `attention_keys`, `plot_attention_maps`, `cls_attention_maps`;
- `curves`: `plot_training_curves`, `active_intervals`;
- `writer`: `write_figures`, `write_checkpoint_figures`, `VisualizationArguments`;
- `drawing`: what the figures share (`images_for_display`, `upsample_maps`).

The figures build on `hf_magma.encoders` (the unmasked in-order forward, features), never on
`hf_magma.evaluation`; ``--figures`` is parsed by the plotting-free `hf_magma.figure_options`.
"""

from ..encoders import patch_grid, run_unmasked
from ..figure_options import FIGURES, parse_figures
from ..logged_metrics import DEFAULT_CURVE_METRICS
from ..trainer_state import find_trainer_state, load_log_history
from .attention import (
    attention_keys,
    attention_probabilities,
    cls_attention_maps,
    first_principal_component,
    key_pca_maps,
    plot_attention_maps,
    plot_key_pca,
)
from .curves import active_intervals, plot_training_curves
from .drawing import VIZ_EXTRA_HINT, images_for_display, upsample_maps
from .pacmap import PaCMAPPanel, pacmap_embedding, plot_pacmap, select_classes
from .writer import VisualizationArguments, write_checkpoint_figures, write_figures

__all__ = [
    "DEFAULT_CURVE_METRICS",
    "FIGURES",
    "VIZ_EXTRA_HINT",
    "PaCMAPPanel",
    "VisualizationArguments",
    "active_intervals",
    "attention_keys",
    "attention_probabilities",
    "cls_attention_maps",
    "find_trainer_state",
    "first_principal_component",
    "images_for_display",
    "key_pca_maps",
    "load_log_history",
    "pacmap_embedding",
    "parse_figures",
    "patch_grid",
    "plot_attention_maps",
    "plot_key_pca",
    "plot_pacmap",
    "plot_training_curves",
    "run_unmasked",
    "select_classes",
    "upsample_maps",
    "write_checkpoint_figures",
    "write_figures",
]
