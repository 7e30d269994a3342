"""Frozen-feature evaluation of ViT encoders: k-NN, linear probe and label fractions, fine-tuning, the protocol.

The paper's protocol (linear probe and k-NN on frozen features, Tables 1-3) runs on features extracted once
(`hf_magma.encoders.extract_features`) and cached in memory, so a 100-epoch probe costs seconds instead of 100
passes of the encoder. The whole run of ``scripts/run_eval.py`` is `hf_magma.cli.run_eval.run_evaluation`.

- `knn`: `knn_predict`, `knn_accuracy`;
- `probe`: `linear_probe`, `sample_label_fraction`;
- `fine_tuning`: `image_classifier_from_encoder`, `finetune`; `fine_tuning_args`: `FineTuningArguments` (MAE's
  layer decay, drop path, mixup / CutMix, RandAugment, base lr); `layer_decay`: `param_groups_layer_decay`;
  `fine_tuning_augment`: `mix_batch`, `add_drop_path`, `FineTuningCollator`;
- `protocol`: `EvaluationArguments`, `evaluate_features`;
- `pixels`: the model-free floor (`pixel_features`);
- `card`: `record_results_in_card`;
- `metrics`: `top1_accuracy`, `classification_accuracy`.
"""

from typing import TYPE_CHECKING

from ..utils.lazy import lazy_exports

_EXPORTS = {
    "card": ("HubPushError", "record_results_in_card"),
    "fine_tuning": ("FineTuningTrainer", "finetune", "image_classifier_from_encoder"),
    "fine_tuning_args": ("FineTuningArguments", "finetune_learning_rate"),
    "fine_tuning_augment": ("BatchRandAugment", "FineTuningCollator", "add_drop_path", "mix_batch"),
    "layer_decay": ("layer_id", "param_groups_layer_decay"),
    "knn": ("KNN_DISTANCE_EPS", "KNN_WEIGHTINGS", "knn_accuracy", "knn_predict"),
    "probe": ("linear_probe", "sample_label_fraction"),
    "metrics": ("classification_accuracy", "top1_accuracy"),
    "pixels": ("pixel_features",),
    "protocol": ("EvaluationArguments", "evaluate_features", "fraction_suffix"),
}
# Re-exported here before 0.2; they belong to other packages.
_MOVED = {
    "SUPPORTED_MODEL_TYPES": "hf_magma.encoders",
    "check_label_feature": "hf_magma.data.columns",
    "encode": "hf_magma.encoders",
    "extract_features": "hf_magma.encoders",
    "load_encoder": "hf_magma.encoders",
    "run_unmasked": "hf_magma.encoders",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS, _MOVED, loaded=globals())

if TYPE_CHECKING:
    from .card import HubPushError, record_results_in_card
    from .fine_tuning import FineTuningTrainer, finetune, image_classifier_from_encoder
    from .fine_tuning_args import FineTuningArguments, finetune_learning_rate
    from .fine_tuning_augment import BatchRandAugment, FineTuningCollator, add_drop_path, mix_batch
    from .knn import KNN_DISTANCE_EPS, KNN_WEIGHTINGS, knn_accuracy, knn_predict
    from .layer_decay import layer_id, param_groups_layer_decay
    from .metrics import classification_accuracy, top1_accuracy
    from .pixels import pixel_features
    from .probe import linear_probe, sample_label_fraction
    from .protocol import EvaluationArguments, evaluate_features, fraction_suffix
