"""`ViTForSSL`: SimCLR / VICReg with MAGMA on a transformers ViT, whose backbone stays a plain `ViTModel`."""

import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file
from transformers import ViTConfig

from hf_magma import MAGMARegularizer, ViTForSSL, magma_loss
from hf_magma.losses.ssl import nt_xent_loss, vicreg_loss
from tests.helpers.tiny import tiny_vit_config


def tiny_config(**kwargs) -> ViTConfig:
    return tiny_vit_config(**{"num_hidden_layers": 3, "projector_hidden_size": 64, "projector_output_size": 32,
                              **kwargs})


def views(batch: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    first = torch.randn(batch, 3, 16, 16, generator=g)
    return first, first + 0.3 * torch.randn(batch, 3, 16, 16, generator=g)


def model_for(objective: str, **kwargs) -> ViTForSSL:
    torch.manual_seed(0)
    return ViTForSSL(tiny_config(ssl_objective=objective, **kwargs))


def test_defaults_are_resolved_per_objective():
    simclr = ViTForSSL(ViTConfig(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=3,
                                 num_attention_heads=2, intermediate_size=64))
    vicreg = ViTForSSL(ViTConfig(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=3,
                                 num_attention_heads=2, intermediate_size=64, ssl_objective="vicreg"))
    assert simclr.config.ssl_objective == "simclr"
    assert (simclr.config.projector_output_size, simclr.config.projector_num_layers) == (256, 2)
    assert (vicreg.config.projector_output_size, vicreg.config.projector_num_layers) == (2048, 3)
    assert simclr.config.magma_reference_layers == [1] and simclr.config.magma_target_layer == 2
    assert simclr.vit.pooler is None


@pytest.mark.parametrize("objective", ["simclr", "vicreg"])
def test_loss_is_the_objective_plus_weighted_magma_on_the_first_view(objective):
    model = model_for(objective, magma_reference_layers=[0, 1])
    model.eval()  # BatchNorm with running statistics, so that the projector is a fixed function here
    first, second = views()
    out = model(first, second, magma_weight=0.5, output_hidden_states=True)

    # MAGMA through the generic regulariser and through magma_loss on the pooled first-view states.
    hidden = [h[: first.shape[0]] for h in out.hidden_states]
    assert len(out.hidden_states) == 4 and out.hidden_states[0].shape[0] == 16
    target = hidden[3][:, 1:].mean(dim=1)
    by_hand = (magma_loss(hidden[1][:, 1:].mean(dim=1), target) + magma_loss(hidden[2][:, 1:].mean(dim=1), target)) / 2
    torch.testing.assert_close(out.magma_loss, by_hand)
    torch.testing.assert_close(out.magma_loss, MAGMARegularizer([0, 1], 2)(hidden))

    # The objective on the projector outputs of each view's CLS representation.
    z1, z2 = out.projections[:8], out.projections[8:]
    torch.testing.assert_close(z1, model.projector(model.vit(first).last_hidden_state[:, 0]))
    if objective == "simclr":
        torch.testing.assert_close(out.objective_loss, nt_xent_loss(z1, z2, temperature=0.2))
        assert out.invariance_loss is None
    else:
        parts = vicreg_loss(z1, z2)
        torch.testing.assert_close(out.objective_loss, parts.loss)
        torch.testing.assert_close(
            (out.invariance_loss, out.variance_loss, out.covariance_loss),
            (parts.invariance, parts.variance, parts.covariance),
        )
    torch.testing.assert_close(out.loss, out.objective_loss + 0.5 * out.magma_loss)


def test_zero_weight_reports_magma_without_a_graph():
    model = model_for("simclr", magma_weight=1.0)
    first, second = views()
    off = model(first, second, magma_weight=0.0)
    assert off.magma_loss.grad_fn is None and off.magma_loss.item() > 0
    assert off.hidden_states is None
    torch.testing.assert_close(off.loss, off.objective_loss)
    on = model(first, second)  # the config's weight
    assert on.magma_loss.grad_fn is not None
    # MAGMA's gradient reaches the reference block through the kernel, from the first view only.
    model.zero_grad()
    on.magma_loss.backward()
    assert model.vit.layers[1].mlp.fc2.weight.grad.abs().sum() > 0
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.projector.parameters())


@pytest.mark.parametrize("objective", ["simclr", "vicreg"])
def test_a_few_steps_lower_the_objective_with_magma_on(objective):
    model = model_for(objective, magma_weight=1.0, projector_num_layers=2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    first, second = views(batch=16, seed=3)
    losses = []
    for _ in range(8):
        out = model(first, second)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.objective_loss.item())
        assert torch.isfinite(out.magma_loss)
    assert losses[-1] < 0.8 * losses[0], losses


def test_backbone_round_trips_through_automodel_without_hf_magma(tmp_path):
    model = model_for("vicreg")
    first, second = views()
    model(first, second).loss.backward()  # BatchNorm statistics move: the checkpoint is a trained one
    model.save_pretrained(tmp_path)
    reloaded = ViTForSSL.from_pretrained(tmp_path)
    assert reloaded.config.ssl_objective == "vicreg"
    for key, value in model.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[key], value, rtol=0, atol=0)

    script = textwrap.dedent(
        f"""
        import sys
        from safetensors.torch import save_file
        from transformers import AutoModel
        encoder, info = AutoModel.from_pretrained({str(tmp_path)!r}, add_pooling_layer=False, output_loading_info=True)
        assert type(encoder).__name__ == "ViTModel", type(encoder)
        assert not info["missing_keys"] and not info["mismatched_keys"], info
        assert all(k.startswith("projector.") for k in info["unexpected_keys"]), info
        plain, info = AutoModel.from_pretrained({str(tmp_path)!r}, output_loading_info=True)
        assert info["missing_keys"] == {{"pooler.dense.weight", "pooler.dense.bias"}}, info
        assert not any(name.startswith("hf_magma") for name in sys.modules)
        save_file(encoder.state_dict(), {str(tmp_path / "encoder.safetensors")!r})
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok")
    encoder = load_file(tmp_path / "encoder.safetensors")
    backbone = model.vit.state_dict()
    assert encoder.keys() == backbone.keys()
    for key, value in backbone.items():
        torch.testing.assert_close(encoder[key], value, rtol=0, atol=0)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(ssl_objective="byol"), "ssl_objective"),
        (dict(representation_pooling="max"), "representation_pooling"),
        (dict(simclr_temperature=0.0), "simclr_temperature"),
        (dict(vicreg_cov_weight=-1.0), "vicreg_cov_weight"),
        (dict(projector_num_layers=0), "projector_num_layers"),
        (dict(magma_target_layer=3), "magma_target_layer"),
        (dict(uniformity_weight=0.01), "uniformity_weight"),
    ],
)
def test_invalid_settings_raise_at_construction(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ViTForSSL(tiny_config(**kwargs))


def test_bad_views_raise_a_clear_error():
    model = model_for("simclr")
    first, second = views()
    with pytest.raises(ValueError, match="two views"):
        model(first)
    with pytest.raises(ValueError, match="same shape"):
        model(first, second[:4])
    with pytest.raises(ValueError, match="magma_weight"):
        model(first, second, magma_weight=-1.0)


def test_mean_pooled_representation():
    model = model_for("simclr", representation_pooling="mean")
    model.eval()
    first, second = views()
    out = model(first, second)
    torch.testing.assert_close(out.representations[:8], model.vit(first).last_hidden_state[:, 1:].mean(dim=1))


def test_selected_hidden_states_are_returned_for_both_views():
    model = model_for("simclr")
    first, second = views()
    out = model(first, second, output_hidden_states=[-1])
    assert [h is not None for h in out.hidden_states] == [False, False, False, True]
    assert out.hidden_states[3].shape == (16, 17, 32)


def test_return_dict_false_gives_a_tuple_of_the_same_values():
    model = model_for("vicreg")
    model.eval()
    first, second = views()
    out = model(first, second)
    plain = model(first, second, return_dict=False)  # was: AttributeError on the backbone's tuple
    assert isinstance(plain, tuple) and len(plain) == len(out.to_tuple())
    for mine, reference in zip(plain, out.to_tuple(), strict=True):
        torch.testing.assert_close(mine, reference)
