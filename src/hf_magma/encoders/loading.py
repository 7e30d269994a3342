"""Loading a ViT encoder for frozen features from any ViT / ViT-MAE checkpoint or model."""

from __future__ import annotations

import logging
import os
from typing import Any

from torch import nn
from transformers import AutoConfig, PreTrainedModel, ViTMAEModel, ViTModel

from ..models.mae import ViTMAEEncoder
from ..utils.checks import named_weights_errors

logger = logging.getLogger(__name__)


SUPPORTED_MODEL_TYPES = ("vit_mae", "vit")


Encoder = ViTMAEModel | ViTModel


def check_local_path(source: str | os.PathLike) -> None:
    """Raise naming ``source`` when it is written as a local path (not a Hub id ``name`` / ``org/name``) that does
    not exist, instead of the Hub client's complaint about the form of repo ids."""
    text = os.fspath(source)
    looks_local = (isinstance(source, os.PathLike) or os.path.isabs(text) or text.startswith((".", "~"))
                   or text.count("/") > 1 or os.sep != "/" and os.sep in text)
    if looks_local and not os.path.exists(os.path.expanduser(text)):
        raise FileNotFoundError(
            f"--model_name_or_path {text}: no such folder. Give a checkpoint folder that exists (the output_dir of "
            "a pretraining run, or one of its checkpoint-N folders) or a Hub model id such as org/name."
        )


def load_encoder(
    model_name_or_path_or_model: str | os.PathLike | nn.Module,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
) -> Encoder:
    """The ViT encoder of a checkpoint (local path or Hub id) or of a model object, ready for frozen features.

    Accepts ViT-MAE checkpoints (ours or plain ``vit_mae``) and ViT checkpoints (``ViTModel``,
    ``ViTForImageClassification``...). Checkpoints loaded here get ``mask_ratio = 0``; `encode` keeps every
    token in its original order for any encoder. Anything that is not a ViT raises ``ValueError``.

    Args:
        model_name_or_path_or_model: a checkpoint folder, a Hub model id, or a model (a ``ViTMAEModel`` /
            ``ViTModel``, or one holding it as ``.vit``).
        revision, token: for Hub checkpoints.

    Returns:
        The ``ViTMAEModel`` or ``ViTModel`` (checkpoints: in eval mode; a model object's own encoder as it is).
    """
    source = model_name_or_path_or_model
    if isinstance(source, nn.Module):
        return _encoder_of(source)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"expected a checkpoint path, a Hub model id or a model, got {type(source).__name__}"
        )
    check_local_path(source)
    try:
        config = AutoConfig.from_pretrained(source, revision=revision, token=token)
    except OSError as error:
        if os.path.exists(os.path.expanduser(os.fspath(source))):
            raise
        raise OSError(
            f"--model_name_or_path {os.fspath(source)}: no local folder of that name, and the Hub could not give a "
            f"model of that id ({error}). Check the spelling: a local checkpoint folder (the output_dir of a "
            "pretraining run, or one of its checkpoint-N folders; ./name for one in the current folder) or a Hub "
            "model id such as org/name."
        ) from error
    model_type = getattr(config, "model_type", None)
    if model_type == "vit_mae":
        encoder_class: type[PreTrainedModel] = ViTMAEEncoder  # the decoder's weights are dropped without a report
        kwargs: dict[str, Any] = {}
        config.mask_ratio = 0.0
    elif model_type == "vit":
        encoder_class, kwargs = ViTModel, {"add_pooling_layer": False}
    else:
        raise ValueError(
            f"{os.fspath(source)!r} is a `{model_type}` checkpoint, not a ViT: evaluation needs one of "
            f"{SUPPORTED_MODEL_TYPES} (a ViT-MAE or ViT encoder)"
        )
    with named_weights_errors(source):
        encoder, info = encoder_class.from_pretrained(
            source, config=config, revision=revision, token=token, output_loading_info=True, **kwargs
        )
    missing = sorted(info.get("missing_keys", []))
    if missing:
        raise ValueError(
            f"{os.fspath(source)!r} does not hold a complete {model_type} encoder; missing weights: "
            f"{missing[:8]}{' ...' if len(missing) > 8 else ''}"
        )
    return encoder.eval()


def _encoder_of(model: nn.Module) -> Encoder:
    if isinstance(model, (ViTMAEModel, ViTModel)):
        return model
    inner = getattr(model, "vit", None)
    if isinstance(inner, (ViTMAEModel, ViTModel)):
        return inner
    raise ValueError(
        f"{type(model).__name__} is not a ViT: evaluation needs a ViTMAEModel, ViTModel or a model holding one "
        "as `.vit` (ViTMAEForPreTraining, ViTMAEWithMAGMA, ViTForImageClassification...)"
    )
