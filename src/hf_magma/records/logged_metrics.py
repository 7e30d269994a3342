"""The names of the metrics that training logs, and how figures and model cards label them."""

from __future__ import annotations

#: The terms a model's output may carry that `MAGMATrainer` logs (MAE's, then SimCLR's / VICReg's), in order.
LOGGED_TERMS: tuple[str, ...] = (
    "reconstruction_loss", "magma_loss", "magma_weight", "uniformity_loss",
    "objective_loss", "invariance_loss", "variance_loss", "covariance_loss",
)
#: The online linear probe's accuracy, logged beside the terms when the data has labels.
ONLINE_ACCURACY = "online_accuracy"
#: Everything `MAGMATrainer` adds to the Trainer's logs.
LOGGED_METRICS: tuple[str, ...] = (*LOGGED_TERMS, ONLINE_ACCURACY)
#: The metrics `hf_magma.visualize.plot_training_curves` draws by default, in panel order (paper Fig. 2 plus the
#: MAE loss).
DEFAULT_CURVE_METRICS: tuple[str, ...] = ("reconstruction_loss", "magma_loss", "magma_weight", ONLINE_ACCURACY)
#: Readable names of the logged metrics (panel titles; "final ..." lines of the model card).
METRIC_LABELS: dict[str, str] = {
    "reconstruction_loss": "reconstruction loss",
    "magma_loss": "MAGMA loss",
    "magma_weight": "MAGMA weight",
    "online_accuracy": "online accuracy",
    "uniformity_loss": "uniformity loss",
    "objective_loss": "SimCLR / VICReg loss",
}
