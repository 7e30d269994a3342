"""The MAGMA regulariser: `magma_loss` on two (B, D) tensors and `MAGMARegularizer` on a model's hidden states.

The semantics follow the authors' code where it and the paper differ (see the project's MAGMA spec):
the kernel bandwidth is the unbiased std of the non-zero squared distances, the Laplacian is
``I - D^-1/2 W D^-1/2`` and the result is divided by ``B^2``. Nothing is detached.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..utils.checks import check_layer_choice, check_number
from .pooling import HIDDEN_STATE_POOLINGS, HiddenStatePooling, pool_hidden_state


def check_matrix(name: str, tensor: torch.Tensor) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dim() != 2:
        raise ValueError(f"`{name}` must have shape (batch, features), got {tuple(tensor.shape)}")
    if not tensor.is_floating_point():
        raise TypeError(f"`{name}` must be a floating-point tensor, got {tensor.dtype}")


def compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    """The dtype the losses compute in: float64 stays float64 (gradcheck, analysis), anything narrower float32."""
    return torch.float64 if tensor.dtype == torch.float64 else torch.float32


def magma_loss(
    reference: torch.Tensor,
    target: torch.Tensor,
    *,
    rbf_scale: float = 1.0,
    eps: float = 1e-4,
) -> torch.Tensor:
    """MAGMA between a reference layer's (B, D) representations and a regularised layer's (B, D') ones.

    Builds an RBF affinity ``W`` on the reference batch (bandwidth: std of the non-zero squared
    distances), its normalised Laplacian ``I - D^-1/2 W D^-1/2``, and returns
    ``trace(Y^T Lap Y) / B^2`` for the target representations ``Y``. Degenerate batches (fewer than two
    samples, or a bandwidth that is zero or not finite) give 0 with finite gradients. From two
    samples on, a NaN or infinite value in either input gives a NaN loss, so that it shows in the logs and in the
    Trainer's NaN handling (never a 0 whose gradients are NaN); a single sample has no term at all and gives 0
    with zero gradients whatever its values (the spec's promise for B < 2). The kernel runs in float32 (float64
    inputs stay float64), also under autocast.

    Args:
        reference: (B, D) representations of the reference layer; they define the graph.
        target: (B, D') representations of the regularised layer, row ``i`` from the same sample as in
            ``reference``.
        rbf_scale: multiplies the squared distances in the RBF kernel (positive).
        eps: added to the degrees before their inverse square root (positive).

    Returns:
        A scalar tensor (float32, or float64 for float64 inputs), differentiable in both inputs; NaN when an
        input of two or more samples is not finite.
    """
    check_matrix("reference", reference)
    check_matrix("target", target)
    if reference.shape[0] != target.shape[0]:
        raise ValueError(
            f"`reference` and `target` must have the same batch size, got {reference.shape[0]} and {target.shape[0]}"
        )
    check_number("rbf_scale", rbf_scale, sign="positive")
    check_number("eps", eps, sign="positive")  # 0 would divide by a zero degree for a sample far from all others

    batch_size = reference.shape[0]
    dtype = compute_dtype(reference if reference.dtype == torch.float64 else target)
    if batch_size < 2:
        # A single sample has no neighbours; keep the graph so that backward() still works.
        return (reference.nan_to_num(0.0, 0.0, 0.0).sum() + target.nan_to_num(0.0, 0.0, 0.0).sum()).to(dtype) * 0.0
    # Checked on the device (no host sync): a non-finite input turns the result into NaN below.
    finite = torch.isfinite(reference).all() & torch.isfinite(target).all()

    with torch.autocast(device_type=reference.device.type, enabled=False):
        x = reference.to(dtype)
        y = target.to(dtype)
        # Direct differences (not the |x|^2 + |y|^2 - 2xy expansion): exact zeros on the diagonal and for
        # duplicate samples, which the bandwidth below has to leave out.
        sq_dist = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist").pow(2)

        # Unbiased std over the non-zero entries, written without boolean indexing so it never syncs.
        nonzero = (sq_dist != 0).to(dtype)
        count = nonzero.sum()
        mean = (sq_dist * nonzero).sum() / count.clamp_min(1.0)
        var = ((sq_dist - mean).pow(2) * nonzero).sum() / (count - 1.0).clamp_min(1.0)
        valid = (count >= 2) & (var > 0) & torch.isfinite(var)
        bandwidth = torch.where(valid, var, torch.ones_like(var)).sqrt()

        affinity = torch.exp(-rbf_scale * sq_dist / bandwidth)
        affinity = affinity * (1.0 - torch.eye(batch_size, dtype=dtype, device=x.device))
        inv_sqrt_degree = (affinity.sum(dim=1) + eps).rsqrt()
        normalized = inv_sqrt_degree[:, None] * affinity * inv_sqrt_degree[None, :]
        # trace(Y^T (I - S) Y) = sum(Y * Y) - sum(Y * (S @ Y))
        value = (y * (y - normalized @ y)).sum() / batch_size**2
        value = torch.where(valid, value, torch.zeros_like(value))
        return torch.where(finite, value, torch.full_like(value, float("nan")))


class MAGMARegularizer:
    """The MAGMA term on any transformers model's ``hidden_states``.

    ``reference_layers`` and ``target_layer`` are 0-based block indices: block ``i``'s output is
    ``hidden_states[i + 1]`` (``hidden_states[0]`` is the embedding output). With several reference layers the
    result is the mean of the per-reference terms. Usage::

        regularizer = MAGMARegularizer(reference_layers=[10], target_layer=11, pooling="mean")
        outputs = model(pixel_values, output_hidden_states=True)
        loss = task_loss + weight * regularizer(outputs.hidden_states)

    Args:
        reference_layers: one or several 0-based block indices whose pooled outputs define the graph.
        target_layer: the 0-based block whose pooled output is regularised (not among ``reference_layers``).
        pooling: ``mean`` (patch tokens, CLS excluded), ``cls`` or ``masked_mean`` (text, with an attention mask).
        rbf_scale, eps: passed to `magma_loss`.
        num_layers: the model's number of blocks, to check the indices against (optional).
    """

    def __init__(
        self,
        reference_layers: int | Sequence[int],
        target_layer: int,
        pooling: HiddenStatePooling = "mean",
        *,
        rbf_scale: float = 1.0,
        eps: float = 1e-4,
        num_layers: int | None = None,
    ) -> None:
        refs = [reference_layers] if isinstance(reference_layers, int) else list(reference_layers)
        refs, target_layer = check_layer_choice(refs, target_layer, num_layers)
        if pooling not in HIDDEN_STATE_POOLINGS:
            raise ValueError(f"`pooling` must be one of {HIDDEN_STATE_POOLINGS}, got {pooling!r}")
        check_number("rbf_scale", rbf_scale, sign="positive")
        check_number("eps", eps, sign="positive")
        self.reference_layers = refs
        self.target_layer = target_layer
        self.pooling = pooling
        self.rbf_scale = rbf_scale
        self.eps = eps

    @property
    def hidden_state_indices(self) -> list[int]:
        """Indices into ``hidden_states`` this term reads (pass them as ``output_hidden_states`` on
        transformers>=5.23)."""
        return sorted({i + 1 for i in [*self.reference_layers, self.target_layer]})

    def pool(self, hidden_states: Sequence[torch.Tensor], layer: int, attention_mask: torch.Tensor | None = None):
        """Pooled (B, D) representation of block ``layer``."""
        if layer + 1 >= len(hidden_states) or hidden_states[layer + 1] is None:
            raise ValueError(
                f"block {layer} needs hidden_states[{layer + 1}], but only {len(hidden_states)} hidden states "
                "were returned (call the model with output_hidden_states=True)"
            )
        return pool_hidden_state(hidden_states[layer + 1], self.pooling, attention_mask)

    def __call__(
        self,
        hidden_states: Sequence[torch.Tensor],
        attention_mask: torch.Tensor | None = None,
        gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The term on this batch.

        Args:
            hidden_states: the model's ``hidden_states``: ``num_blocks + 1`` tensors of shape (B, T, D)
                (index 0 is the embedding output; unneeded entries may be ``None``).
            attention_mask: (B, T), for ``masked_mean`` pooling.
            gather: maps each pooled (B, D) representation to the batch the graph is built on, e.g. a
                differentiable all-gather to the global batch of all processes.

        Returns:
            A scalar tensor: `magma_loss`, averaged over the reference layers.
        """
        if hidden_states is None:
            raise ValueError("MAGMA needs the model's hidden states: call it with output_hidden_states=True")
        gather = gather if gather is not None else (lambda x: x)
        target = gather(self.pool(hidden_states, self.target_layer, attention_mask))
        terms = [
            magma_loss(
                gather(self.pool(hidden_states, ref, attention_mask)), target, rbf_scale=self.rbf_scale, eps=self.eps
            )
            for ref in self.reference_layers
        ]
        return terms[0] if len(terms) == 1 else torch.stack(terms).mean()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(reference_layers={self.reference_layers}, target_layer={self.target_layer}, "
            f"pooling={self.pooling!r}, rbf_scale={self.rbf_scale})"
        )
