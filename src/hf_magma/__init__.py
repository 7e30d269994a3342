"""hf-magma: MAGMA manifold regularisation for Masked Autoencoders, native to Hugging Face transformers.

The package is layered, one folder a layer, and imports run one way (docs/architecture.md;
tests/test_architecture.py keeps it so):

    utils -> losses -> models -> data -> records -> training -> encoders -> evaluation | visualize -> cli

This module re-exports the public API: the loss and the model at once (torch and transformers only), everything
else on first use, so ``import hf_magma`` needs no datasets, kornia, scikit-learn or matplotlib. Each subpackage
exports its own names (``hf_magma.losses``, ``hf_magma.data``, ``hf_magma.evaluation``, ...).
"""

from typing import TYPE_CHECKING

from .losses.magma import MAGMARegularizer, magma_loss
from .losses.uniformity import uniformity_loss
from .models.mae import ViTMAEWithMAGMA
from .utils.lazy import lazy_exports

_EXPORTS = {
    "models.ssl": ("ViTForSSL",),
    "models.arguments": ("MAGMAModelArguments", "load_model_and_image_processor"),
    "models.export": ("save_encoder",),
    "data.arguments": ("ImageDataArguments",),
    "data.loading": ("load_image_datasets",),
    "training.training_args": ("MAGMATrainingArguments",),
    "training.trainer": ("MAGMATrainer",),
    "encoders.loading": ("load_encoder",),
    "encoders.forward": ("run_unmasked",),
    "encoders.features": ("extract_features",),
    "evaluation.protocol": ("EvaluationArguments", "evaluate_features"),
    "evaluation.fine_tuning": ("finetune",),
    "visualize.writer": ("write_checkpoint_figures",),
}
# Names the root exported before 0.2: they still import from here, with a FutureWarning naming their package.
_MOVED = {
    "ViTMAEWithMAGMAOutput": "hf_magma.models",
    "resolve_magma_config": "hf_magma.models",
    "ViTForSSLOutput": "hf_magma.models",
    "resolve_ssl_config": "hf_magma.models",
    "vit_encoder_from": "hf_magma.models",
    "all_gather_with_grad": "hf_magma.utils",
    "pool_hidden_state": "hf_magma.losses",
    "VICRegLossOutput": "hf_magma.losses",
    "nt_xent_loss": "hf_magma.losses",
    "vicreg_loss": "hf_magma.losses",
    "ImageCollator": "hf_magma.data",
    "ImageTransform": "hf_magma.data",
    "TwoViewAugmentation": "hf_magma.data",
    "TwoViewCollator": "hf_magma.data",
    "find_image_column": "hf_magma.data",
    "find_label_column": "hf_magma.data",
    "load_fashion_mnist": "hf_magma.data",
    "add_evaluation_results": "hf_magma.records",
    "add_figures": "hf_magma.records",
    "create_model_card": "hf_magma.records",
    "summarize_training": "hf_magma.records",
    "push_model_card": "hf_magma.records",
    "last_checkpoint": "hf_magma.records",
    "HubPushMixin": "hf_magma.training",
    "OnlineLinearProbe": "hf_magma.training",
    "image_classifier_from_encoder": "hf_magma.evaluation",
    "knn_accuracy": "hf_magma.evaluation",
    "linear_probe": "hf_magma.evaluation",
    "sample_label_fraction": "hf_magma.evaluation",
    "plot_attention_maps": "hf_magma.visualize",
    "plot_key_pca": "hf_magma.visualize",
    "plot_pacmap": "hf_magma.visualize",
    "plot_training_curves": "hf_magma.visualize",
    "run_evaluation": "hf_magma.cli.run_eval",
}

__getattr__, __dir__, _LAZY = lazy_exports(__name__, _EXPORTS, _MOVED, loaded=globals())
__all__ = sorted(["MAGMARegularizer", "ViTMAEWithMAGMA", "magma_loss", "uniformity_loss", *_LAZY])
__version__ = "0.2.0"

if TYPE_CHECKING:
    from .data.arguments import ImageDataArguments
    from .data.loading import load_image_datasets
    from .encoders.features import extract_features
    from .encoders.forward import run_unmasked
    from .encoders.loading import load_encoder
    from .evaluation.fine_tuning import finetune
    from .evaluation.protocol import EvaluationArguments, evaluate_features
    from .models.arguments import MAGMAModelArguments, load_model_and_image_processor
    from .models.export import save_encoder
    from .models.ssl import ViTForSSL
    from .training.trainer import MAGMATrainer
    from .training.training_args import MAGMATrainingArguments
    from .visualize.writer import write_checkpoint_figures
