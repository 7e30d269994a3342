"""Figures that compare checkpoints: PaCMAP with the Davies-Bouldin index, key PCA per layer, last-layer attention
maps and training curves (the paper's Figs. 2, 4, 5 and 6), and MAE reconstructions.

Each ``plot_*`` function writes one PNG with one panel (or one row of panels) per checkpoint and returns the
numbers it drew, so they can be checked or reported. matplotlib and pacmap are imported only when a figure is
drawn (``pip install 'hf-magma[viz]'``); figures are rendered with matplotlib's Agg canvas without touching
pyplot's global state.

- `pacmap`: `plot_pacmap`, `pacmap_embedding`, `select_classes`;
- `attention`: `plot_key_pca`, `key_pca_maps`, `attention_keys`, `plot_attention_maps`, `cls_attention_maps`;
- `curves`: `plot_training_curves`, `active_intervals`;
- `reconstructions`: `plot_reconstructions`, `reconstruct` (de-normalised images under a seeded mask),
  `predicted_pixels`, `mask_noise`, `load_pretraining_model`;
- `writer`: `write_figures`, `write_checkpoint_figures`, `VisualizationArguments`;
- `drawing`: what the figures share (`images_for_display`, `upsample_maps`).

The figures build on `hf_magma.encoders` (the unmasked in-order forward, features) and read the run records of
`hf_magma.records`, never `hf_magma.evaluation`.
"""

from typing import TYPE_CHECKING

from ..utils.lazy import lazy_exports

_EXPORTS = {
    "attention": ("attention_keys", "attention_probabilities", "cls_attention_maps", "first_principal_component",
                  "key_pca_maps", "plot_attention_maps", "plot_key_pca"),
    "curves": ("active_intervals", "plot_training_curves"),
    "drawing": ("VIZ_EXTRA_HINT", "images_for_display", "upsample_maps"),
    "pacmap": ("PaCMAPPanel", "pacmap_embedding", "plot_pacmap", "select_classes"),
    "reconstructions": ("Reconstruction", "load_pretraining_model", "mask_noise", "plot_reconstructions",
                        "predicted_pixels", "reconstruct"),
    "writer": ("VisualizationArguments", "write_checkpoint_figures", "write_figures"),
}
# Re-exported here before 0.2; they belong to other packages.
_MOVED = {
    "DEFAULT_CURVE_METRICS": "hf_magma.records.logged_metrics",
    "FIGURES": "hf_magma.records",
    "find_trainer_state": "hf_magma.records",
    "load_log_history": "hf_magma.records",
    "parse_figures": "hf_magma.records",
    "patch_grid": "hf_magma.encoders",
    "run_unmasked": "hf_magma.encoders",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS, _MOVED, loaded=globals())

if TYPE_CHECKING:
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
    from .reconstructions import (
        Reconstruction,
        load_pretraining_model,
        mask_noise,
        plot_reconstructions,
        predicted_pixels,
        reconstruct,
    )
    from .writer import VisualizationArguments, write_checkpoint_figures, write_figures
