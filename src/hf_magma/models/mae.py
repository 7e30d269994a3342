"""`ViTMAEWithMAGMA`: transformers' `ViTMAEForPreTraining` with the MAGMA and uniformity terms added."""

# No `from __future__ import annotations` here: transformers' utilities read `forward`'s annotations at run time
# (e.g. `**kwargs: Unpack[TransformersKwargs]`), which must be objects, not strings.
import contextlib
from dataclasses import dataclass

import torch
from transformers import ViTMAEConfig, ViTMAEForPreTraining, ViTMAEModel
from transformers.conversion_mapping import (
    USER_REGISTERED_MAPPINGS,
    get_checkpoint_conversion_mapping,
    register_checkpoint_conversion_mapping,
)
from transformers.models.vit_mae.modeling_vit_mae import ViTMAEForPreTrainingOutput
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs

from ..losses.magma import MAGMARegularizer
from ..losses.uniformity import uniformity_loss
from ..utils.checks import check_layer_choice, check_non_negative
from ..utils.distributed import all_gather_with_grad

MAGMA_CONFIG_DEFAULTS = {
    "magma_reference_layers": None,  # resolved to [num_hidden_layers - 2]
    "magma_target_layer": None,  # resolved to num_hidden_layers - 1
    "magma_weight": 1.0,
    "uniformity_weight": 0.0,
}


def resolve_magma_config(config: ViTMAEConfig) -> ViTMAEConfig:
    """Fill in the MAGMA settings absent from ``config`` with their defaults and validate them, in place.

    Raises ``ValueError`` naming the setting when one is invalid.
    """
    num_layers = config.num_hidden_layers
    if num_layers < 2:
        raise ValueError(
            f"MAGMA needs at least two encoder blocks (a reference and a target), got num_hidden_layers={num_layers}"
        )
    refs = getattr(config, "magma_reference_layers", None)
    if refs is None:
        refs = [num_layers - 2]
    elif isinstance(refs, int) and not isinstance(refs, bool):
        refs = [refs]
    target = getattr(config, "magma_target_layer", None)
    if target is None:
        target = num_layers - 1
    refs, target = check_layer_choice(
        refs, target, num_layers, names=("magma_reference_layers", "magma_target_layer")
    )
    check_visible_patches(config)
    for name in ("magma_weight", "uniformity_weight"):
        value = getattr(config, name, None)
        value = MAGMA_CONFIG_DEFAULTS[name] if value is None else value
        setattr(config, name, check_non_negative(name, value))
    config.magma_reference_layers = refs
    config.magma_target_layer = target
    return config


def check_visible_patches(config: ViTMAEConfig) -> None:
    """Raise naming ``mask_ratio`` when the encoder would see no patch: MAGMA's mean over the visible patch tokens
    (CLS excluded) needs at least one."""
    size, patch = config.image_size, config.patch_size
    sizes = size if isinstance(size, (list, tuple)) else (size, size)
    patches = patch if isinstance(patch, (list, tuple)) else (patch, patch)
    num_patches = (sizes[0] // patches[0]) * (sizes[1] // patches[1])
    ratio = getattr(config, "mask_ratio", 0.0) or 0.0
    visible = int(num_patches * (1 - ratio))  # as ViTMAE's random masking counts them
    if visible < 1:
        raise ValueError(
            f"mask_ratio {ratio} keeps int({num_patches} x {1 - ratio:.3g}) = {visible} of the {num_patches} patches "
            "visible, and MAGMA averages the visible patch tokens: lower --mask_ratio (MAE uses 0.75) or use more "
            "patches (a larger image_size or smaller patch_size)"
        )


def call_weight(magma_weight: float | torch.Tensor | None, default: float) -> float:
    """The MAGMA weight of one forward call: the argument (a schedule's value) or else the config's, checked."""
    weight = default if magma_weight is None else magma_weight
    return check_non_negative("magma_weight", weight.item() if isinstance(weight, torch.Tensor) else weight)


class HiddenStateSelection:
    """Which hidden states a MAGMA model captures and which it returns to its caller.

    The model always captures the ``needed`` indices (captured tensors are saved for backward anyway, so this
    costs no memory); the caller gets back only what ``output_hidden_states`` asked for: all of them (``True``),
    none (``False``/``None``), or a selection of indices (transformers>=5.23), the others being ``None``.
    """

    def __init__(self, output_hidden_states: bool | int | list[int] | None, needed: list[int], num_states: int):
        self.output_hidden_states = output_hidden_states
        self.asked: set[int] = set()
        if output_hidden_states is True:
            self.request: bool | list[int] = True
        elif output_hidden_states is None or output_hidden_states is False:  # not `in (False, None)`: 0 == False
            self.request = sorted(set(needed))
        else:
            picks = [output_hidden_states] if isinstance(output_hidden_states, int) else list(output_hidden_states)
            wrong = [i for i in picks
                     if isinstance(i, bool) or not isinstance(i, int) or not -num_states <= i < num_states]
            if wrong:
                raise ValueError(
                    f"`output_hidden_states` asks for hidden states {wrong}, but this model returns {num_states} "
                    f"(indices 0 to {num_states - 1}: the embeddings, then one per block; negative ones count from "
                    "the end)"
                )
            self.asked = {i % num_states for i in picks}
            self.request = sorted({*needed, *self.asked})

    def returned(self, hidden_states: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor | None, ...] | None:
        if self.output_hidden_states is True:
            return hidden_states
        if self.output_hidden_states is None or self.output_hidden_states is False:
            return None
        return tuple(h if i in self.asked else None for i, h in enumerate(hidden_states))


@dataclass
class ViTMAEWithMAGMAOutput(ViTMAEForPreTrainingOutput):
    """`ViTMAEForPreTrainingOutput` plus the unweighted terms; ``loss`` is their weighted sum."""

    reconstruction_loss: torch.FloatTensor | None = None
    magma_loss: torch.FloatTensor | None = None
    uniformity_loss: torch.FloatTensor | None = None


class ViTMAEWithMAGMA(ViTMAEForPreTraining):
    """A drop-in `ViTMAEForPreTraining` whose loss adds MAGMA (and optionally U-MAE's uniformity term).

    It has exactly the parent's parameters, so checkpoints move freely between the two classes. The settings
    live on the plain `ViTMAEConfig` (`magma_reference_layers`, `magma_target_layer`, `magma_weight`,
    `uniformity_weight`) and are saved with it; the checkpoint's `model_type` stays `vit_mae`.

    ``magma_gather`` (an attribute, off by default and not saved) computes both terms over the batch gathered
    from all processes with a differentiable all-gather, so that under DDP "the batch" is the global batch.

    Args:
        config: a `ViTMAEConfig`; its MAGMA settings are filled in and checked by `resolve_magma_config`.
    """

    magma_gather: bool = False

    def __init__(self, config: ViTMAEConfig):
        resolve_magma_config(config)
        super().__init__(config)
        self.magma = MAGMARegularizer(
            config.magma_reference_layers,
            config.magma_target_layer,
            pooling="mean",
            num_layers=config.num_hidden_layers,
        )

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        interpolate_pos_encoding: bool | None = None,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool | int | list[int] | None = None,
        magma_weight: float | torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> ViTMAEWithMAGMAOutput:
        """The parent's forward, plus ``reconstruction_loss``, ``magma_loss`` and ``uniformity_loss``.

        ``loss = reconstruction_loss + w * magma_loss + uniformity_weight * uniformity_loss`` with ``w`` the
        ``magma_weight`` argument (a schedule's value) or else the config's. A term whose weight is 0 is still
        computed and reported, without an autograd graph.

        Args:
            pixel_values: (B, C, H, W) images.
            noise: (B, num_patches), the parent's masking noise (random when ``None``).
            interpolate_pos_encoding, attention_mask: as in `ViTMAEForPreTraining.forward`.
            output_hidden_states: ``True`` (all), ``False``/``None`` (none) or indices of the hidden states to
                return (the others are ``None``; an index out of range is an error); the MAGMA layers are
                computed either way.
            magma_weight: the MAGMA weight of this call (a schedule's value); default ``config.magma_weight``.

        Returns:
            `ViTMAEWithMAGMAOutput`: ``loss`` (scalar), ``logits`` (B, num_patches, patch_size**2 * C), ``mask``
            and ``ids_restore`` (B, num_patches), ``reconstruction_loss``, ``magma_loss`` and
            ``uniformity_loss`` (unweighted scalars), ``hidden_states`` and ``attentions`` as asked; with
            ``return_dict=False`` the same as a tuple, as the parent gives it (the three terms last).
        """
        weight = call_weight(magma_weight, self.config.magma_weight)
        uniformity_weight = self.config.uniformity_weight
        return_dict = kwargs.pop("return_dict", None)
        if return_dict is None:
            return_dict = self.config.return_dict

        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        last = self.config.num_hidden_layers
        # The MAGMA layers, and the last block for the CLS feature of the uniformity term.
        selection = HiddenStateSelection(output_hidden_states, [*self.magma.hidden_state_indices, last], last + 1)
        outputs = super().forward(
            pixel_values,
            noise=noise,
            interpolate_pos_encoding=interpolate_pos_encoding,
            attention_mask=attention_mask,
            output_hidden_states=selection.request,
            return_dict=True,
            **kwargs,
        )
        hidden_states = outputs.hidden_states

        gather = all_gather_with_grad if self.magma_gather else None
        with contextlib.nullcontext() if weight > 0 else torch.no_grad():
            magma = self.magma(hidden_states, gather=gather)
        # Sliced outside no_grad, so the LayerNorm's input keeps its autograd history (module hooks such as
        # FlopCounterMode's expect one on a tensor that requires grad).
        cls_token = hidden_states[last][:, 0]
        with contextlib.nullcontext() if uniformity_weight > 0 else torch.no_grad():
            # Equals the encoder's last_hidden_state[:, 0]: LayerNorm acts on each token alone.
            cls = self.vit.layernorm(cls_token)
            uniformity = uniformity_loss(cls if gather is None else gather(cls))

        reconstruction = outputs.loss
        loss = reconstruction
        if weight > 0:
            loss = loss + weight * magma.to(loss.dtype)
        if uniformity_weight > 0:
            loss = loss + uniformity_weight * uniformity.to(loss.dtype)

        output = ViTMAEWithMAGMAOutput(
            loss=loss,
            logits=outputs.logits,
            mask=outputs.mask,
            ids_restore=outputs.ids_restore,
            hidden_states=selection.returned(hidden_states),
            attentions=outputs.attentions,
            reconstruction_loss=reconstruction,
            magma_loss=magma,
            uniformity_loss=uniformity,
        )
        return output if return_dict else output.to_tuple()


class ViTMAEEncoder(ViTMAEModel):
    """`ViTMAEModel` that loads the encoder of a pretraining checkpoint quietly: the decoder's weights
    (``decoder.*``), which the encoder leaves out by design, are not reported; any other missing, unexpected or
    mismatched weight still is, in transformers' load report."""

    _keys_to_ignore_on_load_unexpected = [r"^decoder\."]


# transformers renames legacy checkpoint keys by class name; a class defined outside the library gets none of
# the parent's renames unless they are registered for it (e.g. facebook/vit-mae-base's decoder keys).
for _class, _parent in ((ViTMAEWithMAGMA, ViTMAEForPreTraining), (ViTMAEEncoder, ViTMAEModel)):
    if _class.__name__ not in USER_REGISTERED_MAPPINGS:
        _parent_mapping = get_checkpoint_conversion_mapping(_parent.__name__)
        if _parent_mapping is not None:
            register_checkpoint_conversion_mapping(_class.__name__, _parent_mapping, overwrite=True)
