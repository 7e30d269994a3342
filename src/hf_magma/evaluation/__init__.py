"""Frozen-feature evaluation of ViT encoders: k-NN, linear probe and label fractions, fine-tuning, the protocol.

The paper's protocol (linear probe and k-NN on frozen features, Tables 1-3) runs on features extracted once
(`hf_magma.encoders.extract_features`) and cached in memory, so a 100-epoch probe costs seconds instead of 100
passes of the encoder. The whole run of ``scripts/run_eval.py`` is `hf_magma.cli.evaluation.run_evaluation`.

- `knn`: `knn_predict`, `knn_accuracy`;
- `linear_probe`: `linear_probe`, `sample_label_fraction`;
- `finetune`: `image_classifier_from_encoder`, `finetune`;
- `protocol`: `EvaluationArguments`, `evaluate_features`;
- `card`: `record_results_in_card`;
- `metrics`: `top1_accuracy`, `classification_accuracy`.

The encoder functions (`load_encoder`, `run_unmasked`, `encode`, `extract_features`) live in `hf_magma.encoders`
and are re-exported here.
"""

from ..data import check_label_feature
from ..encoders import SUPPORTED_MODEL_TYPES, encode, extract_features, load_encoder, run_unmasked
from .card import HubPushError, record_results_in_card
from .finetune import finetune, image_classifier_from_encoder
from .knn import KNN_DISTANCE_EPS, KNN_WEIGHTINGS, knn_accuracy, knn_predict
from .linear_probe import linear_probe, sample_label_fraction
from .metrics import classification_accuracy, top1_accuracy
from .protocol import EvaluationArguments, evaluate_features, fraction_suffix

__all__ = [
    "KNN_DISTANCE_EPS",
    "KNN_WEIGHTINGS",
    "SUPPORTED_MODEL_TYPES",
    "EvaluationArguments",
    "HubPushError",
    "check_label_feature",
    "classification_accuracy",
    "encode",
    "evaluate_features",
    "extract_features",
    "finetune",
    "fraction_suffix",
    "image_classifier_from_encoder",
    "knn_accuracy",
    "knn_predict",
    "linear_probe",
    "load_encoder",
    "record_results_in_card",
    "run_unmasked",
    "sample_label_fraction",
    "top1_accuracy",
]
