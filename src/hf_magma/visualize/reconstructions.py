"""MAE reconstructions under a fixed, seeded mask: the computation (`reconstruct`, tensors in, de-normalised images
out) apart from the drawing (`plot_reconstructions`), and the loading of a whole pretraining model, decoder
included (`load_pretraining_model`)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoConfig, ViTMAEForPreTraining

from ..encoders.loading import check_local_path
from ..utils.checks import named_weights_errors
from .drawing import _figure_class, _save, images_for_display

#: The grey (in displayed pixel values, 0-1) that stands for a masked patch in the masked input.
MASK_FILL = 0.5


@dataclass
class Reconstruction:
    """One model's reconstruction of a batch, in displayed pixel values (the image processor's normalisation
    undone, not clamped), each image (B, C, H, W).

    Attributes:
        original: the input images.
        masked: the input with the masked patches filled with `MASK_FILL`.
        reconstruction: the decoder's prediction of every patch (with ``norm_pix_loss``, mapped back to pixels
            with the mean and variance of the same patch of the input).
        pasted: the prediction on the masked patches, the input on the visible ones.
        mask: (B, 1, H, W), 1 where a patch was masked, 0 where the encoder saw it.
    """

    original: torch.Tensor
    masked: torch.Tensor
    reconstruction: torch.Tensor
    pasted: torch.Tensor
    mask: torch.Tensor


def load_pretraining_model(source: str | os.PathLike | nn.Module) -> ViTMAEForPreTraining:
    """The whole MAE (encoder and decoder) of a pretraining checkpoint or model, for reconstructions.

    Args:
        source: a checkpoint folder or Hub id holding a ``vit_mae`` pretraining model (ours or plain ViT-MAE), or
            a `ViTMAEForPreTraining` (`hf_magma.ViTMAEWithMAGMA` is one).

    Returns:
        The model (a checkpoint's in eval mode); a model object is returned as it is.
    """
    if isinstance(source, ViTMAEForPreTraining):
        return source
    if isinstance(source, nn.Module):
        raise ValueError(
            f"Reconstructions need a ViTMAEForPreTraining (encoder and decoder), got {type(source).__name__}"
        )
    check_local_path(source)
    model_type = getattr(AutoConfig.from_pretrained(source), "model_type", None)
    if model_type != "vit_mae":
        raise ValueError(
            f"{os.fspath(source)!r} is a `{model_type}` checkpoint without a decoder: reconstructions need a ViT-MAE "
            "pretraining checkpoint (the run's output_dir, not its encoder/ folder)"
        )
    with named_weights_errors(source):
        model, info = ViTMAEForPreTraining.from_pretrained(source, output_loading_info=True)
    missing = sorted(k for k in info.get("missing_keys", []) if k.startswith("decoder."))
    if missing:
        raise ValueError(
            f"{os.fspath(source)!r} has no complete decoder (missing {missing[:4]}{' ...' if len(missing) > 4 else ''}"
            "): reconstructions need the pretraining checkpoint, decoder included"
        )
    return model.eval()


def mask_noise(batch_size: int, num_patches: int, seed: int) -> torch.Tensor:
    """ViT-MAE's masking ``noise`` (B, num_patches) drawn from ``seed`` alone: the same mask for every model whose
    patch grid has ``num_patches`` patches, whatever the global random state."""
    return torch.rand(batch_size, num_patches, generator=torch.Generator().manual_seed(seed))


def predicted_pixels(model: ViTMAEForPreTraining, pixel_values: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """The decoder's prediction as an image in the space of ``pixel_values`` (the model's input).

    With ``config.norm_pix_loss`` the decoder predicts each patch normalised by that patch's own mean and variance
    of the target; it is mapped back with them, as MAE's visualisation does:
    ``pred * (var + 1e-6) ** 0.5 + mean`` (``var`` unbiased, as in the loss).

    Args:
        model: the MAE whose `patchify` / `unpatchify` give the patch layout.
        pixel_values: (B, C, H, W), the model's input.
        logits: (B, num_patches, patch_size ** 2 * C), the decoder's output for that input.

    Returns:
        (B, C, H, W).
    """
    if model.config.norm_pix_loss:
        target = model.patchify(pixel_values)
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        logits = logits * (var + 1.0e-6) ** 0.5 + mean
    return model.unpatchify(logits, tuple(pixel_values.shape[-2:]))


@torch.no_grad()
def reconstruct(
    model: ViTMAEForPreTraining,
    pixel_values: torch.Tensor,
    *,
    image_mean: Sequence[float],
    image_std: Sequence[float],
    noise: torch.Tensor | None = None,
    seed: int = 0,
) -> Reconstruction:
    """Mask ``pixel_values`` with a fixed mask, reconstruct them with ``model`` and undo the normalisation.

    The model runs in eval mode (its training mode is restored) with its own mask ratio. The image processor's
    normalisation is undone with ``image_mean`` / ``image_std`` (one value, or one per channel).

    Args:
        model: a `ViTMAEForPreTraining` (`hf_magma.ViTMAEWithMAGMA`...).
        pixel_values: (B, C, H, W) model inputs (normalised by the image processor).
        image_mean, image_std: the image processor's normalisation.
        noise: (B, num_patches) masking noise; default `mask_noise` of ``seed``.
        seed: the mask's seed when ``noise`` is not given.

    Returns:
        `Reconstruction` of (B, C, H, W) tensors on the CPU, in float32.
    """
    mean = _channel_values("image_mean", image_mean, pixel_values.shape[1])
    std = _channel_values("image_std", image_std, pixel_values.shape[1])
    parameter = next(model.parameters())
    inputs = pixel_values.to(device=parameter.device, dtype=parameter.dtype)
    num_patches = model.patchify(inputs).shape[1]
    if noise is None:
        noise = mask_noise(len(inputs), num_patches, seed)
    if tuple(noise.shape) != (len(inputs), num_patches):
        raise ValueError(f"`noise` must be (batch, patches) = {(len(inputs), num_patches)}, got {tuple(noise.shape)}")
    was_training = model.training
    model.eval()
    try:
        outputs = model(pixel_values=inputs, noise=noise.to(parameter.device))
    finally:
        model.train(was_training)
    inputs = inputs.float().cpu()
    prediction = predicted_pixels(model, inputs, outputs.logits.float().cpu())
    patch_size = model.config.patch_size
    patch_mask = outputs.mask.float().cpu().unsqueeze(-1).expand(-1, -1, patch_size ** 2 * inputs.shape[1])
    mask = model.unpatchify(patch_mask, tuple(inputs.shape[-2:]))
    pasted = inputs * (1 - mask) + prediction * mask
    original, reconstruction, pasted = (x * std + mean for x in (inputs, prediction, pasted))
    mask = mask[:, :1]
    return Reconstruction(
        original=original, masked=original * (1 - mask) + MASK_FILL * mask, reconstruction=reconstruction,
        pasted=pasted, mask=mask,
    )


def _channel_values(name: str, values: Sequence[float], channels: int) -> torch.Tensor:
    tensor = torch.as_tensor(values, dtype=torch.float32).flatten()
    if tensor.numel() not in (1, channels):
        raise ValueError(f"`{name}` must have 1 or {channels} values (one per channel), got {tensor.numel()}")
    return tensor.reshape(1, -1, 1, 1)


_ROWS = (("masked", "masked"), ("reconstruction", "reconstruction"), ("pasted", "+ visible"))


def plot_reconstructions(
    models: Mapping[str, ViTMAEForPreTraining],
    pixel_values: torch.Tensor,
    output_path: str | os.PathLike,
    *,
    image_mean: Sequence[float],
    image_std: Sequence[float],
    seed: int = 0,
    display_channels: Sequence[int] | None = None,
    panel_size: float = 1.2,
    dpi: int = 100,
) -> dict[str, Reconstruction]:
    """Reconstructions of the same images under the same seeded mask, one column per image: the original on top,
    then for each checkpoint the masked input, the reconstruction and the reconstruction with the visible patches
    pasted back (the first three channels shown, or ``display_channels``; one channel as grey).

    The PNG is ``dpi * panel_size * images`` by ``dpi * panel_size * (1 + 3 * checkpoints + 0.3)`` pixels.

    Args:
        models: ``{name: ViTMAEForPreTraining}``, in row order.
        pixel_values: (B, C, H, W) model inputs.
        output_path: the PNG to write.
        image_mean, image_std: the image processor's normalisation, undone for display.
        seed: the mask's seed (`mask_noise`).
        display_channels: the channels shown (`images_for_display`).

    Returns:
        ``{name: Reconstruction}``.
    """
    if not models:
        raise ValueError("`models` is empty: pass {name: ViTMAEForPreTraining}")
    Figure = _figure_class()
    results = {
        name: reconstruct(model, pixel_values, image_mean=image_mean, image_std=image_std, seed=seed)
        for name, model in models.items()
    }
    nrows, ncols = 1 + len(_ROWS) * len(results), len(pixel_values)
    fig = Figure(figsize=(panel_size * ncols, panel_size * (nrows + 0.3)))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    labelled = [("original", next(iter(results.values())).original)]
    for name, result in results.items():
        labelled += [(f"{name}\n{label}", getattr(result, field)) for field, label in _ROWS]
    for row, (label, images) in zip(axes, labelled, strict=True):
        shown = images_for_display(images, [0.0], [1.0], display_channels)
        for ax, image in zip(row, shown, strict=True):
            ax.imshow(image)
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(label, fontsize=7)
    fig.suptitle(f"Reconstructions (mask seed {seed})", fontsize=9)
    _save(fig, output_path, dpi)
    return results
