"""`ViTForSSL`: a transformers `ViTModel` with a projector, trained by SimCLR or VICReg, plus MAGMA.

The backbone lives under the standard ``vit`` prefix, so a saved checkpoint is a plain ``model_type=vit`` one:
``AutoModel.from_pretrained(path)`` gives a `ViTModel` with the trained encoder (the projector is left out).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn
from transformers import ViTConfig
from transformers.modeling_outputs import ModelOutput
from transformers.models.vit.modeling_vit import ViTModel, ViTPreTrainedModel

from ..losses.magma import MAGMARegularizer
from ..losses.pooling import IMAGE_POOLINGS, pool_hidden_state
from ..losses.ssl import SSL_OBJECTIVES, nt_xent_loss, vicreg_loss
from ..utils.checks import check_non_negative, check_number
from ..utils.distributed import all_gather_with_grad
from .mae import HiddenStateSelection, call_weight, resolve_magma_config

# Per objective: (projector output size, projector layers), as in the SimCLR and VICReg papers' set-ups.
_OBJECTIVE_PROJECTOR_DEFAULTS = {"simclr": (256, 2), "vicreg": (2048, 3)}

SSL_CONFIG_DEFAULTS = {
    "ssl_objective": "simclr",
    "representation_pooling": "cls",
    "projector_hidden_size": 2048,
    "projector_output_size": None,  # 256 for SimCLR, 2048 for VICReg
    "projector_num_layers": None,  # 2 for SimCLR, 3 for VICReg
    "simclr_temperature": 0.2,
    "vicreg_sim_weight": 25.0,
    "vicreg_var_weight": 25.0,
    "vicreg_cov_weight": 1.0,
}


def resolve_ssl_config(config: ViTConfig) -> ViTConfig:
    """Fill in the SSL and MAGMA settings absent from ``config`` with their defaults and validate them, in place.

    MAGMA's settings (``magma_reference_layers``, ``magma_target_layer``, ``magma_weight``) are resolved as for
    `ViTMAEWithMAGMA`. Raises ``ValueError`` naming the setting when one is invalid.
    """
    resolve_magma_config(config)
    if config.uniformity_weight > 0:
        raise ValueError(
            "`uniformity_weight` is U-MAE's term and is not part of the SimCLR/VICReg objectives; leave it at 0"
        )
    for name, default in SSL_CONFIG_DEFAULTS.items():
        if getattr(config, name, None) is None:
            setattr(config, name, default)
    if config.ssl_objective not in SSL_OBJECTIVES:
        raise ValueError(f"`ssl_objective` must be one of {SSL_OBJECTIVES}, got {config.ssl_objective!r}")
    if config.representation_pooling not in IMAGE_POOLINGS:
        raise ValueError(
            f"`representation_pooling` must be one of {IMAGE_POOLINGS}, got {config.representation_pooling!r}"
        )
    output_size, num_layers = _OBJECTIVE_PROJECTOR_DEFAULTS[config.ssl_objective]
    if config.projector_output_size is None:
        config.projector_output_size = output_size
    if config.projector_num_layers is None:
        config.projector_num_layers = num_layers
    for name in ("projector_hidden_size", "projector_output_size", "projector_num_layers"):
        check_number(name, getattr(config, name), sign="positive", integer=True)
    config.simclr_temperature = float(check_number("simclr_temperature", config.simclr_temperature, sign="positive"))
    for name in ("vicreg_sim_weight", "vicreg_var_weight", "vicreg_cov_weight"):
        setattr(config, name, check_non_negative(name, getattr(config, name)))
    return config


class ProjectionHead(nn.Sequential):
    """The SimCLR / VICReg projector: ``(Linear -> BatchNorm1d -> ReLU) x (num_layers - 1) -> Linear``."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int, num_layers: int) -> None:
        layers: list[nn.Module] = []
        size = input_size
        for _ in range(num_layers - 1):
            layers += [nn.Linear(size, hidden_size), nn.BatchNorm1d(hidden_size), nn.ReLU(inplace=True)]
            size = hidden_size
        layers.append(nn.Linear(size, output_size))
        super().__init__(*layers)


@dataclass
class ViTForSSLOutput(ModelOutput):
    """``loss = objective_loss + w * magma_loss``; the parts are unweighted.

    ``representations`` (2B, hidden) and ``projections`` (2B, projector_output_size) stack the first view's
    rows over the second's; so do ``hidden_states`` when asked for.
    """

    loss: torch.FloatTensor | None = None
    objective_loss: torch.FloatTensor | None = None
    magma_loss: torch.FloatTensor | None = None
    invariance_loss: torch.FloatTensor | None = None
    variance_loss: torch.FloatTensor | None = None
    covariance_loss: torch.FloatTensor | None = None
    representations: torch.FloatTensor | None = None
    projections: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


class ViTForSSL(ViTPreTrainedModel):
    """A `ViTModel` backbone and an MLP projector trained on two views by SimCLR or VICReg, with MAGMA.

    MAGMA is computed on the first view's block outputs (patch-token means, CLS excluded, before the final
    LayerNorm). The settings live on a plain `ViTConfig` (``ssl_objective``, ``projector_*``,
    ``simclr_temperature``, ``vicreg_*_weight``, ``representation_pooling`` and the ``magma_*`` ones, see
    `resolve_ssl_config`) and are saved with it; the checkpoint's ``model_type`` stays ``vit``.

    ``magma_gather`` (an attribute, off by default and not saved) computes MAGMA over the first views gathered
    from all processes with a differentiable all-gather, as `ViTMAEWithMAGMA` does.
    """

    magma_gather: bool = False

    def __init__(self, config: ViTConfig):
        resolve_ssl_config(config)
        super().__init__(config)
        self.vit = ViTModel(config, add_pooling_layer=False)
        self.projector = ProjectionHead(
            config.hidden_size,
            config.projector_hidden_size,
            config.projector_output_size,
            config.projector_num_layers,
        )
        self.magma = MAGMARegularizer(
            config.magma_reference_layers,
            config.magma_target_layer,
            pooling="mean",
            num_layers=config.num_hidden_layers,
        )
        self.post_init()

    def represent(self, last_hidden_state: torch.Tensor) -> torch.Tensor:
        """The (B, hidden) representation fed to the projector: the CLS token or the patch-token mean."""
        return pool_hidden_state(last_hidden_state, self.config.representation_pooling)

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        pixel_values_2: torch.Tensor | None = None,
        interpolate_pos_encoding: bool | None = None,
        output_hidden_states: bool | int | list[int] | None = None,
        magma_weight: float | torch.Tensor | None = None,
        **kwargs,
    ) -> ViTForSSLOutput | tuple[torch.Tensor, ...]:
        """Both views through the backbone in one pass, each through the projector, then the objective.

        ``loss = objective_loss + w * magma_loss`` with ``w`` the ``magma_weight`` argument (a schedule's value)
        or else the config's; with ``w = 0`` MAGMA is still computed and reported, without an autograd graph.
        ``return_dict=False`` gives the same as a tuple (its ``None`` fields left out), as transformers models do.
        """
        if pixel_values is None or pixel_values_2 is None:
            raise ValueError("`ViTForSSL` needs two views of the batch: `pixel_values` and `pixel_values_2`")
        if pixel_values.shape != pixel_values_2.shape:
            raise ValueError(
                f"the two views must have the same shape, got {tuple(pixel_values.shape)} and "
                f"{tuple(pixel_values_2.shape)}"
            )
        if pixel_values.dim() != 4:
            raise ValueError(
                f"`pixel_values` must have shape (batch, channels, height, width), got {tuple(pixel_values.shape)}"
            )
        weight = call_weight(magma_weight, self.config.magma_weight)
        return_dict = kwargs.pop("return_dict", None)
        if return_dict is None:
            return_dict = self.config.return_dict

        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        selection = HiddenStateSelection(
            output_hidden_states, self.magma.hidden_state_indices, self.config.num_hidden_layers + 1
        )
        batch_size = pixel_values.shape[0]
        outputs = self.vit(
            torch.cat([pixel_values, pixel_values_2]),
            interpolate_pos_encoding=interpolate_pos_encoding,
            output_hidden_states=selection.request,
            return_dict=True,
            **kwargs,
        )
        hidden_states = outputs.hidden_states

        gather = all_gather_with_grad if self.magma_gather else None
        with contextlib.nullcontext() if weight > 0 else torch.no_grad():
            first_view = [None if h is None else h[:batch_size] for h in hidden_states]
            magma = self.magma(first_view, gather=gather)

        representations = self.represent(outputs.last_hidden_state)
        # One projector call per view: the BatchNorm statistics are each view's own, as in SimCLR and VICReg.
        z1 = self.projector(representations[:batch_size])
        z2 = self.projector(representations[batch_size:])
        invariance = variance = covariance = None
        if self.config.ssl_objective == "simclr":
            objective = nt_xent_loss(z1, z2, temperature=self.config.simclr_temperature)
        else:
            objective, invariance, variance, covariance = vicreg_loss(
                z1,
                z2,
                sim_weight=self.config.vicreg_sim_weight,
                var_weight=self.config.vicreg_var_weight,
                cov_weight=self.config.vicreg_cov_weight,
            )
        loss = objective + weight * magma.to(objective.dtype) if weight > 0 else objective

        output = ViTForSSLOutput(
            loss=loss,
            objective_loss=objective,
            magma_loss=magma,
            invariance_loss=invariance,
            variance_loss=variance,
            covariance_loss=covariance,
            representations=representations,
            projections=torch.cat([z1, z2]),
            hidden_states=selection.returned(hidden_states),
            attentions=outputs.attentions,
        )
        return output if return_dict else output.to_tuple()
