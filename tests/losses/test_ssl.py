"""SimCLR's NT-Xent and VICReg against hand-computed values and brute-force formulas."""

import math

import pytest
import torch

from hf_magma.losses.ssl import nt_xent_loss, vicreg_loss


def brute_force_nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> float:
    z = torch.cat([z1, z2]).double()
    n = z1.shape[0]
    total = 0.0
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        def sim(a, b):
            return float(z[a] @ z[b] / (z[a].norm() * z[b].norm())) / temperature
        denominator = sum(math.exp(sim(i, k)) for k in range(2 * n) if k != i)
        total += -math.log(math.exp(sim(i, positive)) / denominator)
    return total / (2 * n)


def brute_force_vicreg(z1, z2, sim_w=25.0, var_w=25.0, cov_w=1.0, eps=1e-4):
    z1, z2 = z1.double(), z2.double()
    n, d = z1.shape
    invariance = sum(float((z1[i, j] - z2[i, j]) ** 2) for i in range(n) for j in range(d)) / (n * d)
    variance = covariance = 0.0
    for z in (z1, z2):
        means = [sum(float(z[i, j]) for i in range(n)) / n for j in range(d)]
        for j in range(d):
            var = sum((float(z[i, j]) - means[j]) ** 2 for i in range(n)) / (n - 1)
            variance += max(0.0, 1 - math.sqrt(var + eps)) / d / 2
        for a in range(d):
            for b in range(d):
                if a != b:
                    cov = sum((float(z[i, a]) - means[a]) * (float(z[i, b]) - means[b]) for i in range(n)) / (n - 1)
                    covariance += cov**2 / d
    return sim_w * invariance + var_w * variance + cov_w * covariance, invariance, variance, covariance


def test_nt_xent_hand_computed():
    # Two orthogonal images, identical views, temperature 1: each anchor sees its positive at cosine 1 and two
    # negatives at cosine 0, so the loss is -log(e / (e + 2)) = log(1 + 2 / e).
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert nt_xent_loss(z, z.clone(), temperature=1.0).item() == pytest.approx(math.log(1 + 2 / math.e), rel=1e-6)
    # Scale does not matter (cosine similarity); temperature 0.5 doubles the exponents.
    expected = -math.log(math.exp(2) / (math.exp(2) + 2))
    assert nt_xent_loss(3 * z, z, temperature=0.5).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("temperature", [0.1, 0.5, 2.0])
def test_nt_xent_matches_brute_force(temperature):
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    value = nt_xent_loss(z1, z2, temperature=temperature)
    assert value.item() == pytest.approx(brute_force_nt_xent(z1, z2, temperature), rel=1e-5)
    # Swapping the views only permutes the anchors.
    assert nt_xent_loss(z2, z1, temperature=temperature).item() == pytest.approx(value.item(), rel=1e-5)


def test_vicreg_hand_computed():
    z1 = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    z2 = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    out = vicreg_loss(z1, z2)
    # invariance: squared differences 0, 1, 0, 1 over 4 entries.
    assert out.invariance.item() == pytest.approx(0.5)
    # variance: z1's columns have std sqrt(2) > 1; z2's second column has std sqrt(1e-4) = 0.01, so
    # (0 + (0 + 0.99) / 2) / 2.
    assert out.variance.item() == pytest.approx(0.2475, rel=1e-6)
    # covariance: z1's covariance is [[2, 2], [2, 2]], off-diagonal squares 8, / 2 features; z2's is diagonal.
    assert out.covariance.item() == pytest.approx(4.0)
    assert out.loss.item() == pytest.approx(25 * 0.5 + 25 * 0.2475 + 4.0, rel=1e-6)


def test_vicreg_matches_brute_force_and_weights():
    g = torch.Generator().manual_seed(1)
    z1, z2 = 0.7 * torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    for weights in [(25.0, 25.0, 1.0), (1.0, 0.0, 3.0)]:
        out = vicreg_loss(z1, z2, *weights)
        expected = brute_force_vicreg(z1, z2, *weights)
        for got, want in zip(out, expected, strict=True):
            assert got.item() == pytest.approx(want, rel=1e-5, abs=1e-7)


def test_losses_run_in_float32_under_autocast_and_backpropagate():
    g = torch.Generator().manual_seed(2)
    z1 = torch.randn(8, 16, generator=g, requires_grad=True)
    z2 = torch.randn(8, 16, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        simclr = nt_xent_loss(z1.bfloat16(), z2.bfloat16())
        vicreg = vicreg_loss(z1.bfloat16(), z2.bfloat16()).loss
    assert simclr.dtype == vicreg.dtype == torch.float32
    (simclr + vicreg).backward()
    assert torch.isfinite(z1.grad).all() and z1.grad.abs().sum() > 0


def test_vicreg_gradient_is_finite_for_a_collapsed_batch():
    z = torch.ones(4, 3, requires_grad=True)
    vicreg_loss(z, z.detach().clone()).loss.backward()
    assert torch.isfinite(z.grad).all()


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: nt_xent_loss(torch.randn(4, 3), torch.randn(5, 3)), "same shape"),
        (lambda: nt_xent_loss(torch.randn(4), torch.randn(4)), "shape \\(batch, features\\)"),
        (lambda: nt_xent_loss(torch.randn(4, 3), torch.randn(4, 3), temperature=0.0), "temperature"),
        (lambda: nt_xent_loss(torch.randn(4, 3), torch.randn(4, 3), temperature=float("nan")), "temperature"),
        (lambda: vicreg_loss(torch.randn(1, 3), torch.randn(1, 3)), "at least 2"),
        (lambda: vicreg_loss(torch.randn(4, 3), torch.randn(4, 3), var_weight=-1.0), "var_weight"),
        (lambda: vicreg_loss(torch.randn(4, 3), torch.randn(4, 3), eps=0.0), "eps"),
    ],
)
def test_bad_input_raises_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_integer_input_is_rejected():
    with pytest.raises(TypeError, match="floating-point"):
        nt_xent_loss(torch.ones(2, 2, dtype=torch.long), torch.ones(2, 2, dtype=torch.long))
