"""hf-magma: MAGMA manifold regularisation for Masked Autoencoders, native to Hugging Face transformers.

Imports go one way (docs/architecture.md; tests/test_architecture.py keeps it so):
losses -> models -> data -> training -> evaluation / figures -> entry points (`hf_magma.cli`).
A module imports only from its own layer or the layers before it; evaluation and figures (visualize) are
siblings that share `hf_magma.encoders` and never import each other. This root module re-exports the public API:
the loss and the model at once (torch and transformers only), everything else on first use (module
`__getattr__`, as transformers and TRL do), so `import hf_magma` needs no datasets, kornia, scikit-learn or
matplotlib.
"""

import importlib
from typing import TYPE_CHECKING, Any

from .losses import MAGMARegularizer, magma_loss, pool_hidden_state, uniformity_loss
from .modeling import ViTMAEWithMAGMA, ViTMAEWithMAGMAOutput, all_gather_with_grad, resolve_magma_config

_LAZY_ATTRIBUTES = {
    "augmentation": ('TwoViewAugmentation', 'TwoViewCollator'),
    "data": ('ImageCollator', 'ImageDataArguments', 'ImageTransform', 'find_image_column', 'find_label_column', 'load_fashion_mnist', 'load_image_datasets'),
    "encoders": ('extract_features', 'load_encoder', 'run_unmasked'),
    "evaluation": ('EvaluationArguments', 'evaluate_features', 'image_classifier_from_encoder', 'knn_accuracy', 'linear_probe', 'sample_label_fraction'),
    "cli.evaluation": ('run_evaluation',),
    "export": ('save_encoder', 'vit_encoder_from'),
    "hub": ('HubPushMixin', 'push_model_card'),
    "card_results": ('add_evaluation_results', 'add_figures'),
    "model_card": ('create_model_card', 'summarize_training'),
    "model_config": ('MAGMAModelArguments', 'load_model_and_image_processor'),
    "modeling_ssl": ('ViTForSSL', 'ViTForSSLOutput', 'resolve_ssl_config'),
    "ssl_objectives": ('VICRegLossOutput', 'nt_xent_loss', 'vicreg_loss'),
    "trainer": ('MAGMATrainer', 'OnlineLinearProbe'),
    "trainer_state": ('last_checkpoint',),
    "training_args": ('MAGMATrainingArguments',),
    "visualize": ('plot_attention_maps', 'plot_key_pca', 'plot_pacmap', 'plot_training_curves'),
}
_MODULE_OF = {name: module for module, names in _LAZY_ATTRIBUTES.items() for name in names}

if TYPE_CHECKING:
    from .augmentation import TwoViewAugmentation, TwoViewCollator
    from .data import ImageCollator, ImageDataArguments, ImageTransform, find_image_column, find_label_column, load_fashion_mnist, load_image_datasets
    from .encoders import extract_features, load_encoder, run_unmasked
    from .evaluation import EvaluationArguments, evaluate_features, image_classifier_from_encoder, knn_accuracy, linear_probe, sample_label_fraction
    from .cli.evaluation import run_evaluation
    from .export import save_encoder, vit_encoder_from
    from .hub import HubPushMixin, push_model_card
    from .card_results import add_evaluation_results, add_figures
    from .model_card import create_model_card, summarize_training
    from .model_config import MAGMAModelArguments, load_model_and_image_processor
    from .modeling_ssl import ViTForSSL, ViTForSSLOutput, resolve_ssl_config
    from .ssl_objectives import VICRegLossOutput, nt_xent_loss, vicreg_loss
    from .trainer import MAGMATrainer, OnlineLinearProbe
    from .trainer_state import last_checkpoint
    from .training_args import MAGMATrainingArguments
    from .visualize import plot_attention_maps, plot_key_pca, plot_pacmap, plot_training_curves


def __getattr__(name: str) -> Any:
    """Import the public object ``name`` (or the submodule ``name``) on first use."""
    if name in _MODULE_OF:
        value = getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
        globals()[name] = value
        return value
    if name in {module.split(".")[0] for module in _LAZY_ATTRIBUTES}:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__version__ = "0.1.0"

__all__ = [
    "EvaluationArguments",
    "HubPushMixin",
    "ImageCollator",
    "ImageDataArguments",
    "ImageTransform",
    "MAGMAModelArguments",
    "MAGMARegularizer",
    "MAGMATrainer",
    "MAGMATrainingArguments",
    "OnlineLinearProbe",
    "TwoViewAugmentation",
    "TwoViewCollator",
    "VICRegLossOutput",
    "ViTForSSL",
    "ViTForSSLOutput",
    "ViTMAEWithMAGMA",
    "ViTMAEWithMAGMAOutput",
    "add_evaluation_results",
    "add_figures",
    "all_gather_with_grad",
    "create_model_card",
    "evaluate_features",
    "extract_features",
    "find_image_column",
    "find_label_column",
    "image_classifier_from_encoder",
    "knn_accuracy",
    "last_checkpoint",
    "linear_probe",
    "load_encoder",
    "load_fashion_mnist",
    "load_image_datasets",
    "load_model_and_image_processor",
    "magma_loss",
    "nt_xent_loss",
    "plot_attention_maps",
    "plot_key_pca",
    "plot_pacmap",
    "plot_training_curves",
    "pool_hidden_state",
    "push_model_card",
    "resolve_magma_config",
    "resolve_ssl_config",
    "run_evaluation",
    "run_unmasked",
    "sample_label_fraction",
    "save_encoder",
    "summarize_training",
    "uniformity_loss",
    "vicreg_loss",
    "vit_encoder_from",
]
