"""Model cards for MAGMA checkpoints, rendered from the `templates/m-mae.md` template with `huggingface_hub`.

The card says what was trained (MAE, M-MAE, U-MAE or MU-MAE, from the weights actually used), on what data, with
which MAGMA settings, how training went, how the checkpoint evaluates and how to load it. Evaluation results
and figures can be added later (`hf_magma.records.card_results`) without losing the rest of the card.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..models.export import ENCODER_SUBFOLDER
from ..models.mae import resolve_magma_config
from ..models.ssl import resolve_ssl_config
from .card_results import check_figures, eval_section, figures_section, format_value
from .logged_metrics import LOGGED_TERMS, METRIC_LABELS

TEMPLATE_NAME = "m-mae.md"
CARD_TAGS = ["vit-mae", "magma", "self-supervised", "image-feature-extraction"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")

# (attribute of the training arguments, label in the card); nothing else of the arguments is ever written.
_TRAINING_FIELDS = (
    ("learning_rate", "learning rate"),
    ("base_learning_rate", "base learning rate (per 256 images)"),
    ("per_device_train_batch_size", "batch size per device"),
    ("gradient_accumulation_steps", "gradient accumulation steps"),
    ("num_train_epochs", "epochs"),
    ("max_steps", "max steps"),
    ("optim", "optimizer"),
    ("weight_decay", "weight decay"),
    ("adam_beta1", "Adam beta1"),
    ("adam_beta2", "Adam beta2"),
    ("lr_scheduler_type", "learning-rate schedule"),
    ("warmup_steps", "warmup steps"),
    ("seed", "seed"),
)
_SUMMARY_LABELS = {
    "global_step": "optimisation steps",
    "epoch": "epochs",
    "loss": "final loss",
    **{name: f"final {METRIC_LABELS[name]}" for name in LOGGED_TERMS if name in METRIC_LABELS},
    "eval_loss": "final eval loss",
    "train_runtime": "training time (s)",
    "train_samples_per_second": "training images / s",
}


def template_text() -> str:
    """The card template, read from the installed package."""
    return resources.files("hf_magma").joinpath("templates", TEMPLATE_NAME).read_text(encoding="utf-8")


def magma_method_name(magma_weight: float, uniformity_weight: float) -> str:
    """The paper's name for the objective: MAE, M-MAE (MAGMA), U-MAE (uniformity) or MU-MAE (both)."""
    if magma_weight > 0 and uniformity_weight > 0:
        return "MU-MAE"
    if magma_weight > 0:
        return "M-MAE"
    if uniformity_weight > 0:
        return "U-MAE"
    return "MAE"


_METHOD_DESCRIPTIONS = {
    "MAE": "Both regularisers had weight 0: this is a plain masked autoencoder (the MAGMA term was computed and "
    "logged for comparison but not trained on).",
    "M-MAE": "The objective is the MAE reconstruction loss plus the MAGMA manifold regulariser.",
    "U-MAE": "The objective is the MAE reconstruction loss plus U-MAE's uniformity term (no MAGMA term).",
    "MU-MAE": "The objective is the MAE reconstruction loss plus the MAGMA manifold regulariser and U-MAE's "
    "uniformity term.",
}


def summarize_training(state: Any) -> dict[str, float]:
    """Steps, epochs and the last logged value of each loss term, from a `transformers.TrainerState`."""
    summary: dict[str, float] = {"global_step": state.global_step}
    if state.epoch is not None:
        summary["epoch"] = round(float(state.epoch), 4)
    for entry in state.log_history:
        for key in _SUMMARY_LABELS:
            if key in entry and key not in ("global_step", "epoch"):
                summary[key] = entry[key]
        if "train_loss" in entry and "loss" not in summary:
            summary["loss"] = entry["train_loss"]
    return summary


def _dataset_link(dataset_name: str | None) -> str | None:
    if dataset_name and _HUB_ID.match(dataset_name) and "/" in dataset_name and not os.path.exists(dataset_name):
        return f"https://huggingface.co/datasets/{dataset_name}"
    return None


# (distribution, name in the card), as in the Trainer's own cards' "Framework versions".
_FRAMEWORKS = (
    ("hf-magma", "hf-magma"), ("transformers", "Transformers"), ("torch", "Pytorch"), ("accelerate", "Accelerate"),
    ("datasets", "Datasets"), ("huggingface-hub", "huggingface_hub"),
)


def framework_versions() -> list[tuple[str, str]]:
    """(name, version) of the installed libraries the checkpoint was made with (read from their metadata)."""
    from importlib import metadata

    versions = []
    for distribution, name in _FRAMEWORKS:
        try:
            versions.append((name, metadata.version(distribution)))
        except metadata.PackageNotFoundError:
            continue
    return versions


def card_tags(base: Sequence[str], *extra: Iterable[str] | str | None) -> list[str]:
    """``base`` then every tag of ``extra`` (strings or lists, e.g. ``tags=`` and ``model.model_tags``), each once."""
    tags: list[str] = []
    for group in (base, *extra):
        for tag in [group] if isinstance(group, str) else (group or []):
            if tag not in tags:
                tags.append(tag)
    return tags


def _known_tokens(training_args: Any = None) -> list[str]:
    from huggingface_hub import get_token

    tokens = [getattr(training_args, "hub_token", None), os.environ.get("HF_TOKEN"), get_token()]
    return [t for t in tokens if isinstance(t, str) and len(t) >= 8]


def _redact(text: str, tokens: Iterable[str]) -> str:
    for token in tokens:
        text = text.replace(token, "<redacted>")
    return text


def _method(config: Any, training_args: Any) -> tuple[str, str | None, float, float]:
    """The objective's name and description, and the MAGMA and uniformity weights (the run's over the config's)."""
    ssl_objective = getattr(config, "ssl_objective", None)
    magma_weight = getattr(training_args, "magma_weight", None)
    magma_weight = config.magma_weight if magma_weight is None else float(magma_weight)
    uniformity_weight = getattr(training_args, "uniformity_weight", None)
    uniformity_weight = config.uniformity_weight if uniformity_weight is None else float(uniformity_weight)
    method = magma_method_name(magma_weight, uniformity_weight)
    method_description = _METHOD_DESCRIPTIONS.get(method)
    if ssl_objective:
        base = {"simclr": "SimCLR", "vicreg": "VICReg"}[config.ssl_objective]
        method = f"M-{base}" if magma_weight > 0 else base
        method_description = (
            f"The objective is {base} on two SimCLR-style augmented views of each image (a ViT backbone and an MLP "
            "projector), " + ("plus the MAGMA manifold regulariser on the first view's block outputs." if
                              magma_weight > 0 else
                              "without MAGMA (the term was computed and logged, not trained on).")
        )
    return method, method_description, magma_weight, uniformity_weight


def _magma_settings(
    config: Any, training_args: Any, method: str, magma_weight: float, uniformity_weight: float
) -> list[tuple[str, Any]]:
    """The card's MAGMA table: objective, layers, weight and schedule."""
    ssl_objective = getattr(config, "ssl_objective", None)
    start_epoch = getattr(training_args, "magma_start_epoch", None)
    epochs = getattr(training_args, "magma_epochs", None)
    start_step, steps = getattr(training_args, "magma_start_step", None), getattr(training_args, "magma_steps", None)
    magma_settings = [
        ("objective", method),
        ("reference layers (0-based blocks)", ", ".join(str(i) for i in config.magma_reference_layers)),
        ("regularised (target) layer", config.magma_target_layer),
        ("MAGMA weight (lambda)", format_value(magma_weight)),
    ]
    if start_step is not None or steps is not None:
        magma_settings += [("MAGMA start step", start_step), ("MAGMA duration (steps)", steps)]
    elif start_epoch is not None or epochs is not None:
        magma_settings += [("MAGMA start epoch (e_st)", start_epoch), ("MAGMA duration in epochs (e_dur)", epochs)]
    else:
        magma_settings.append(("MAGMA schedule", "constant weight"))
    if not ssl_objective:
        magma_settings.append(("uniformity weight (mu)", format_value(uniformity_weight)))
    return magma_settings


def _window_rows(window: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The card's rows for the MAGMA window a run used (and how an ``auto`` start decided it)."""
    rows = []
    if window.get("auto"):
        rows.append(("automatic start (e_st auto)", window.get("rule", "")))
    if window.get("start_step") is None:
        never = "never on: the term never rose" if window.get("auto") else "never on: the run ended before e_st"
        return [*rows, ("MAGMA window used", never)]
    used = f"optimizer steps [{window['start_step']}, {window['end_step']})"
    if window.get("start_epoch") is not None:
        used += f", epochs [{window['start_epoch']:g}, {window['end_epoch']:g})"
    if window.get("auto"):
        used += f", switched on at step {window['decided_at_step']}"
    return [*rows, ("MAGMA window used", used)]


def _model_settings(config: Any) -> list[tuple[str, Any]]:
    """The card's model table: encoder and decoder (MAE) or projector and objective settings (SimCLR / VICReg)."""
    ssl_objective = getattr(config, "ssl_objective", None)
    return [
        ("encoder", f"{config.num_hidden_layers} blocks x {config.hidden_size} wide, "
                    f"{config.num_attention_heads} heads"),
        (
            "decoder",
            f"{config.decoder_num_hidden_layers} blocks x {config.decoder_hidden_size} wide, "
            f"{config.decoder_num_attention_heads} heads",
        ),
        ("image size / patch size", f"{config.image_size} / {config.patch_size}"),
        ("mask ratio", format_value(config.mask_ratio)),
        ("normalised-pixel loss", config.norm_pix_loss),
    ] if not ssl_objective else [
        ("encoder", f"{config.num_hidden_layers} blocks x {config.hidden_size} wide, "
                    f"{config.num_attention_heads} heads"),
        ("projector", f"{config.projector_num_layers} layers, {config.projector_hidden_size} wide, "
                      f"{config.projector_output_size} out"),
        ("representation", config.representation_pooling),
        ("image size / patch size", f"{config.image_size} / {config.patch_size}"),
        *([("NT-Xent temperature", format_value(config.simclr_temperature))] if config.ssl_objective == "simclr" else [
            ("VICReg weights (invariance / variance / covariance)",
             f"{format_value(config.vicreg_sim_weight)} / {format_value(config.vicreg_var_weight)} / "
             f"{format_value(config.vicreg_cov_weight)}")]),
    ]


def _training_settings(training_args: Any) -> list[tuple[str, Any]]:
    """The card's training table: the hyperparameters named in `_TRAINING_FIELDS` and the total batch size."""
    training_settings = []
    if training_args is not None:
        for attribute, label in _TRAINING_FIELDS:
            value = getattr(training_args, attribute, None)
            if value is None or (attribute == "max_steps" and value <= 0):
                continue
            value = getattr(value, "value", value)  # enums (optimizer, scheduler)
            training_settings.append((label, format_value(value)))
        world_size = getattr(training_args, "world_size", 1) or 1
        total = training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps * world_size
        training_settings.append(("total batch size", total))
    return training_settings


def create_model_card(
    *,
    output_dir: str | os.PathLike,
    model_config: Any,
    training_args: Any = None,
    dataset_name: str | None = None,
    train_summary: Mapping[str, float] | None = None,
    eval_results: Sequence[EvalResult] | None = None,
    figures: Mapping[str, str] | None = None,
    base_model: str | None = None,
    model_name: str | None = None,
    license: str = "apache-2.0",
    tags: Iterable[str] | str | None = None,
    augmentation: Mapping[str, Any] | None = None,
    magma_window: Mapping[str, Any] | None = None,
    save: bool = True,
) -> ModelCard:
    """Render the card of a MAGMA checkpoint from the package's template (and write it to ``output_dir/README.md``).

    ``training_args`` (a `TrainingArguments`, optionally with the MAGMA schedule fields) gives the schedule and
    hyperparameters; its ``magma_weight``/``uniformity_weight`` take precedence over the config's to name the
    method. ``train_summary`` is typically `summarize_training(trainer.state)`. ``figures`` maps captions to PNG
    paths relative to ``output_dir``. ``augmentation`` maps names of the training augmentation's settings (crop,
    flip, where it ran) to their values, listed under the training settings. ``tags`` are added to the card's own
    (e.g. the ``tags=`` of `Trainer.push_to_hub` and ``model.model_tags``). ``magma_window`` is the window the run
    used (`MAGMATrainer.magma_window_used`: steps, epochs, an ``auto`` start's decision). The card ends with the
    framework versions, as the Trainer's cards do. No token or other secret from the arguments is ever written.
    """
    ssl_objective = getattr(model_config, "ssl_objective", None)
    config = (resolve_ssl_config if ssl_objective else resolve_magma_config)(copy.deepcopy(model_config))
    method, method_description, magma_weight, uniformity_weight = _method(config, training_args)

    repo_id = getattr(training_args, "hub_model_id", None) or Path(output_dir).resolve().name
    model_name = model_name or repo_id.split("/")[-1]
    figures = check_figures(output_dir, figures) if figures else {}

    card_data = ModelCardData(
        model_name=model_name,
        library_name="transformers",
        license=license,
        tags=card_tags([*(["vit", *CARD_TAGS[1:]] if ssl_objective else CARD_TAGS), method.lower()], tags),
        datasets=[dataset_name] if _dataset_link(dataset_name) else None,
        base_model=base_model,
        pipeline_tag="image-feature-extraction",
        eval_results=list(eval_results) if eval_results else None,
    )

    magma_settings = _magma_settings(config, training_args, method, magma_weight, uniformity_weight)
    if magma_weight > 0 and magma_window is not None:
        magma_settings += _window_rows(magma_window)

    model_settings = _model_settings(config)
    training_settings = _training_settings(training_args)
    training_settings += [(f"augmentation: {name}", format_value(value))
                          for name, value in (augmentation or {}).items()]
    summary_rows = [(_SUMMARY_LABELS.get(k, k), format_value(v)) for k, v in (train_summary or {}).items()]

    architecture = f"ViT, {config.num_hidden_layers} x {config.hidden_size}, patch {config.patch_size}"
    card = ModelCard.from_template(
        card_data,
        template_str=template_text(),
        model_name=model_name,
        repo_id=repo_id,
        method=method,
        method_description=method_description,
        ssl=bool(ssl_objective),
        architecture=architecture,
        base_model=base_model,
        dataset_name=dataset_name,
        dataset_link=_dataset_link(dataset_name),
        magma_settings=magma_settings,
        model_settings=model_settings,
        training_settings=training_settings,
        train_summary=summary_rows,
        eval_section=eval_section(eval_results),
        figures_section=figures_section(figures),
        encoder_subfolder=ENCODER_SUBFOLDER,
        framework_versions=framework_versions(),
    )
    card = ModelCard(_redact(str(card), _known_tokens(training_args)))
    if save:
        os.makedirs(output_dir, exist_ok=True)
        card.save(os.path.join(output_dir, "README.md"))
    return card
