"""The MAGMA and uniformity terms against brute-force formulations of the spec."""

import math

import pytest
import torch

from hf_magma import MAGMARegularizer, magma_loss, uniformity_loss
from hf_magma.losses.pooling import pool_hidden_state


def brute_force_magma(x: torch.Tensor, y: torch.Tensor, rbf_scale: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """MAGMA written element by element, straight from the spec (the authors' code semantics)."""
    b = x.shape[0]
    d = [[sum((x[i, k] - x[j, k]) ** 2 for k in range(x.shape[1])) for j in range(b)] for i in range(b)]
    nonzero = [d[i][j] for i in range(b) for j in range(b) if d[i][j] != 0]
    mean = sum(nonzero) / len(nonzero)
    s = math.sqrt(sum((v - mean) ** 2 for v in nonzero) / (len(nonzero) - 1))
    w = [[0.0 if i == j else math.exp(-rbf_scale * d[i][j] / s) for j in range(b)] for i in range(b)]
    deg = [sum(w[i]) for i in range(b)]
    total = 0.0
    for i in range(b):
        for j in range(b):
            lap = (1.0 if i == j else 0.0) - w[i][j] / math.sqrt(deg[i] + eps) / math.sqrt(deg[j] + eps)
            total += lap * sum(y[i, k] * y[j, k] for k in range(y.shape[1]))
    return torch.as_tensor(total / b**2)


def brute_force_magma_torch(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """The same spec with dense broadcasting and boolean indexing, differentiable, for gradient comparisons."""
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    s = d[d != 0].std()
    w = torch.exp(-d / s) * (1 - torch.eye(x.shape[0], dtype=x.dtype))
    deg = w.sum(1)
    inv = torch.diag(1 / torch.sqrt(deg + eps))
    lap = torch.eye(x.shape[0], dtype=x.dtype) - inv @ w @ inv
    return torch.trace(y.T @ lap @ y) / x.shape[0] ** 2


@pytest.mark.parametrize("batch,dx,dy,scale", [(2, 3, 3, 1.0), (5, 4, 6, 1.0), (7, 3, 2, 0.5), (9, 5, 5, 2.0)])
def test_matches_brute_force_double_loop(batch, dx, dy, scale):
    g = torch.Generator().manual_seed(batch * 100 + dx)
    x = torch.randn(batch, dx, generator=g, dtype=torch.float64)
    y = torch.randn(batch, dy, generator=g, dtype=torch.float64)
    if batch == 2:  # two samples: every non-zero distance equal, zero spread -> defined as 0
        assert magma_loss(x, y).item() == 0.0
        return
    expected = brute_force_magma(x, y, rbf_scale=scale)
    torch.testing.assert_close(magma_loss(x, y, rbf_scale=scale), expected, rtol=1e-12, atol=1e-14)


def test_float32_matches_float64_reference():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 16, generator=g)
    y = torch.randn(32, 24, generator=g)
    expected = brute_force_magma_torch(x.double(), y.double())
    got = magma_loss(x, y)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-7)


def test_gradients_match_brute_force_through_both_inputs():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(12, 6, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(12, 5, generator=g, dtype=torch.float64, requires_grad=True)
    gx, gy = torch.autograd.grad(magma_loss(x, y), (x, y))
    ex, ey = torch.autograd.grad(brute_force_magma_torch(x, y), (x, y))
    torch.testing.assert_close(gx, ex, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gy, ey, rtol=1e-10, atol=1e-12)
    # Nothing is detached: the reference representations receive a gradient through W and the bandwidth.
    assert gx.abs().sum() > 0


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: magma_loss(a, b, rbf_scale=0.7), (x, y))


def test_invariant_to_permuting_the_batch():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(16, 8, generator=g, dtype=torch.float64)
    y = torch.randn(16, 8, generator=g, dtype=torch.float64)
    perm = torch.randperm(16, generator=g)
    torch.testing.assert_close(magma_loss(x[perm], y[perm]), magma_loss(x, y), rtol=1e-12, atol=1e-14)


def test_non_negative():
    # I - D^-1/2 W D^-1/2 is positive semi-definite, so the term is >= 0 (up to the eps on the degrees).
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        b = int(torch.randint(3, 40, (1,), generator=g))
        x = torch.randn(b, 7, generator=g) * float(torch.rand(1, generator=g) * 10)
        y = torch.randn(b, 5, generator=g) + float(torch.randn(1, generator=g)) * 3
        assert magma_loss(x, y).item() >= 0


def test_identical_targets_for_connected_samples_cost_little():
    # Laplacian smoothness: if every target equals the same vector, only the eps/degree mismatch remains.
    x = torch.randn(10, 4, dtype=torch.float64)
    y_const = torch.ones(10, 3, dtype=torch.float64)
    y_rand = torch.randn(10, 3, dtype=torch.float64) * 3
    assert magma_loss(x, y_const) < magma_loss(x, y_rand)


@pytest.mark.parametrize(
    "x",
    [
        torch.randn(1, 4),  # a single sample
        torch.zeros(0, 4),  # an empty batch
        torch.ones(6, 4),  # all representations identical: no non-zero distance
        torch.tensor([[0.0, 0.0], [1.0, 0.0]]),  # two samples: zero spread
        torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]),  # all distances equal
        torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]]),  # duplicates: non-zero distances all equal
    ],
)
def test_degenerate_batches_give_zero_and_finite_gradients(x):
    x = x.clone().requires_grad_(True)
    y = torch.randn(x.shape[0], 3, requires_grad=True)
    loss = magma_loss(x, y)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(y.grad).all()


def test_single_sample_with_non_finite_values_still_gives_zero():
    x = torch.tensor([[float("nan"), 1.0]], requires_grad=True)
    y = torch.tensor([[float("inf"), 1.0]], requires_grad=True)
    loss = magma_loss(x, y)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(y.grad).all()


def test_duplicate_samples_are_left_out_of_the_bandwidth():
    # Exact zeros between duplicates must be excluded as the spec's `d != 0` says, which the expanded
    # |x|^2 + |y|^2 - 2xy form would not guarantee.
    g = torch.Generator().manual_seed(4)
    base = torch.randn(5, 3, generator=g, dtype=torch.float64) * 100
    x = torch.cat([base, base[:2]])
    y = torch.randn(7, 2, generator=g, dtype=torch.float64)
    torch.testing.assert_close(magma_loss(x, y), brute_force_magma(x, y), rtol=1e-12, atol=1e-14)


def test_bfloat16_inputs_and_autocast_run_the_kernel_in_float32():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(16, 8, generator=g)
    y = torch.randn(16, 8, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = magma_loss(x.bfloat16(), y.bfloat16())
    assert got.dtype == torch.float32
    expected = magma_loss(x.bfloat16().float(), y.bfloat16().float())
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert uniformity_loss(x.half()).dtype == torch.float32


def test_vectorised_batch_of_256_is_finite_with_large_scale():
    x = torch.randn(256, 192) * 1e3
    y = torch.randn(256, 192) * 1e3
    loss = magma_loss(x, y)
    assert torch.isfinite(loss)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"reference": torch.randn(4, 3, 2)}, "reference"),
        ({"target": torch.randn(5, 3)}, "same batch size"),
        ({"rbf_scale": 0.0}, "rbf_scale"),
        ({"rbf_scale": float("nan")}, "rbf_scale"),
        ({"eps": float("nan")}, "eps"),
        ({"eps": 0.0}, "eps"),
        ({"reference": torch.arange(12).view(4, 3)}, "floating-point"),
    ],
)
def test_bad_input_raises_clear_errors(kwargs, match):
    args = {"reference": torch.randn(4, 3), "target": torch.randn(4, 3)}
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        magma_loss(args.pop("reference"), args.pop("target"), **args)


def test_uniformity_matches_definition():
    g = torch.Generator().manual_seed(6)
    f = torch.randn(9, 5, generator=g, dtype=torch.float64, requires_grad=True)
    expected = 0.0
    for i in range(9):
        for j in range(9):
            expected += (torch.dot(f[i], f[j]) / f[i].norm() / f[j].norm()) ** 2
    expected = expected / 81
    torch.testing.assert_close(uniformity_loss(f), expected, rtol=1e-12, atol=1e-14)
    assert torch.autograd.gradcheck(uniformity_loss, (f,))


def test_pooling_modes():
    h = torch.randn(3, 5, 4)
    torch.testing.assert_close(pool_hidden_state(h, "mean"), h[:, 1:].mean(1))
    torch.testing.assert_close(pool_hidden_state(h, "cls"), h[:, 0])
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    pooled = pool_hidden_state(h, "masked_mean", mask)
    torch.testing.assert_close(pooled[0], h[0, :2].mean(0))
    torch.testing.assert_close(pooled[1], h[1].mean(0))
    torch.testing.assert_close(pooled[2], h[2, 0])
    with pytest.raises(ValueError, match="pooling"):
        pool_hidden_state(h, "max")


def test_regularizer_on_hidden_states_equals_magma_loss_on_pooled_states():
    g = torch.Generator().manual_seed(7)
    hidden = tuple(torch.randn(6, 5, 4, generator=g) for _ in range(4))  # embeddings + 3 blocks
    reg = MAGMARegularizer(reference_layers=[0, 1], target_layer=2, pooling="mean")
    assert reg.hidden_state_indices == [1, 2, 3]
    expected = (
        magma_loss(hidden[1][:, 1:].mean(1), hidden[3][:, 1:].mean(1))
        + magma_loss(hidden[2][:, 1:].mean(1), hidden[3][:, 1:].mean(1))
    ) / 2
    torch.testing.assert_close(reg(hidden), expected)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"reference_layers": [], "target_layer": 1}, "at least one"),
        ({"reference_layers": [1], "target_layer": 1}, "must not contain"),
        ({"reference_layers": [-1], "target_layer": 1}, "out of range"),
        ({"reference_layers": [0], "target_layer": 3, "num_layers": 3}, "out of range"),
        ({"reference_layers": [0], "target_layer": 1, "pooling": "max"}, "pooling"),
        ({"reference_layers": [0.5], "target_layer": 1}, "integer"),
    ],
)
def test_regularizer_rejects_invalid_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MAGMARegularizer(**kwargs)


def test_regularizer_names_missing_hidden_states():
    reg = MAGMARegularizer(reference_layers=[0], target_layer=1)
    with pytest.raises(ValueError, match="output_hidden_states"):
        reg(None)
    with pytest.raises(ValueError, match="hidden_states\\[2\\]"):
        reg((torch.randn(2, 3, 4), torch.randn(2, 3, 4)))


@pytest.mark.parametrize("where", ["reference", "target"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_inputs_give_a_non_finite_loss_never_zero(where, bad):
    # Before: 0.0 with NaN gradients, so one optimizer step silently made the weights non-finite.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, generator=g)
    y = torch.randn(6, 3, generator=g)
    (x if where == "reference" else y)[2, 1] = bad
    x.requires_grad_(True)
    y.requires_grad_(True)
    loss = magma_loss(x, y)
    assert not torch.isfinite(loss)



def test_mean_pooling_honours_an_attention_mask_and_refuses_a_wrong_shape():
    hidden = torch.randn(2, 5, 3)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    pooled = pool_hidden_state(hidden, "mean", mask)
    torch.testing.assert_close(pooled[0], hidden[0, 1:3].mean(dim=0))  # CLS out, masked tokens out
    torch.testing.assert_close(pooled[1], hidden[1, 1:].mean(dim=0))
    regularizer = MAGMARegularizer(reference_layers=[0], target_layer=1, pooling="mean")
    states = [torch.randn(4, 5, 3) for _ in range(3)]
    with pytest.raises(ValueError, match=r"`attention_mask` must have shape \(batch, tokens\) = \(4, 5\).*\(4, 7\)"):
        regularizer(states, attention_mask=torch.ones(4, 7))
    full = regularizer(states, attention_mask=torch.ones(4, 5))
    assert full == regularizer(states)
    assert regularizer(states, attention_mask=torch.tensor([[1, 1, 0, 0, 0]] * 4)) != full
