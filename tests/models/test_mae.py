"""`ViTMAEWithMAGMA`: a drop-in `ViTMAEForPreTraining` whose checkpoints stay plain transformers ones."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file
from transformers import ViTMAEConfig, ViTMAEForPreTraining

from hf_magma import ViTMAEWithMAGMA, magma_loss, uniformity_loss
from tests.helpers.tiny import tiny_vit_mae_config


def tiny_config(**kwargs) -> ViTMAEConfig:
    return tiny_vit_mae_config(**{"num_hidden_layers": 4, "mask_ratio": 0.75, **kwargs})


def inputs(batch: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, 16, 16, generator=g), torch.rand(batch, 16, generator=g)


def twins(**kwargs):
    torch.manual_seed(0)
    model = ViTMAEWithMAGMA(tiny_config(**kwargs))
    parent = ViTMAEForPreTraining(tiny_config())
    parent.load_state_dict(model.state_dict())
    return model, parent


def test_adds_no_parameters_and_resolves_defaults():
    model, parent = twins()
    assert model.state_dict().keys() == parent.state_dict().keys()
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in parent.parameters())
    assert model.config.magma_reference_layers == [2]
    assert model.config.magma_target_layer == 3
    assert model.config.magma_weight == 1.0
    assert model.config.uniformity_weight == 0.0


@pytest.mark.parametrize("train", [True, False])
def test_equivalent_to_parent_and_terms_are_reported(train):
    model, parent = twins(uniformity_weight=0.5)
    model.train(train)
    parent.train(train)
    pixels, noise = inputs()
    out = model(pixels, noise=noise)
    ref = parent(pixels, noise=noise, output_hidden_states=True)
    torch.testing.assert_close(out.reconstruction_loss, ref.loss, rtol=0, atol=0)
    torch.testing.assert_close(out.logits, ref.logits, rtol=0, atol=0)
    torch.testing.assert_close(out.mask, ref.mask, rtol=0, atol=0)
    # The terms, recomputed from the parent's hidden states by hand.
    pooled = [h[:, 1:].mean(1) for h in ref.hidden_states]
    expected_magma = magma_loss(pooled[3], pooled[4])
    cls = parent.vit.layernorm(ref.hidden_states[4])[:, 0]
    expected_uniformity = uniformity_loss(cls)
    torch.testing.assert_close(out.magma_loss, expected_magma)
    torch.testing.assert_close(out.uniformity_loss, expected_uniformity)
    torch.testing.assert_close(out.loss, ref.loss + expected_magma + 0.5 * expected_uniformity)
    assert out.hidden_states is None


def test_cls_feature_equals_the_encoders_last_hidden_state():
    model, _ = twins()
    pixels, noise = inputs()
    encoded = model.vit(pixels, noise=noise)
    hidden = model.vit(pixels, noise=noise, output_hidden_states=True).hidden_states
    torch.testing.assert_close(model.vit.layernorm(hidden[-1][:, 0]), encoded.last_hidden_state[:, 0])


def test_weight_argument_overrides_config_and_zero_builds_no_graph():
    model, parent = twins(magma_weight=2.0)
    pixels, noise = inputs()
    out = model(pixels, noise=noise, magma_weight=0.25)
    torch.testing.assert_close(out.loss, out.reconstruction_loss + 0.25 * out.magma_loss)
    out = model(pixels, noise=noise)
    torch.testing.assert_close(out.loss, out.reconstruction_loss + 2.0 * out.magma_loss)

    off = model(pixels, noise=noise, magma_weight=0.0)
    assert off.magma_loss.item() > 0  # still reported
    assert not off.magma_loss.requires_grad and off.magma_loss.grad_fn is None
    assert not off.uniformity_loss.requires_grad  # uniformity_weight is 0
    torch.testing.assert_close(off.loss, off.reconstruction_loss, rtol=0, atol=0)
    off.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    parent(pixels, noise=noise).loss.backward()
    for name, p in parent.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(grads[name], p.grad, rtol=0, atol=0)
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="magma_weight"):
            model(pixels, noise=noise, magma_weight=bad)


def test_gradients_reach_the_reference_layer_through_the_kernel():
    model, _ = twins()
    pixels, noise = inputs(batch=12)
    out = model(pixels, noise=noise, output_hidden_states=True)
    out.magma_loss.backward()
    ref_block = model.vit.layers[2]
    with_kernel = [p.grad.clone() for p in ref_block.parameters()]
    assert all(torch.isfinite(g).all() for g in with_kernel)
    assert sum(g.abs().sum() for g in with_kernel) > 0

    # With the reference representations detached, block 2 still gets gradient through block 3's input, but a
    # different one: the difference is the path through W and its bandwidth, which must not be cut.
    model.zero_grad()
    out = model(pixels, noise=noise, output_hidden_states=True)
    hs = out.hidden_states
    detached = magma_loss(hs[3][:, 1:].mean(1).detach(), hs[4][:, 1:].mean(1))
    detached.backward()
    without_kernel = [p.grad for p in ref_block.parameters()]
    assert any(not torch.allclose(a, b) for a, b in zip(with_kernel, without_kernel, strict=True))


def test_hidden_states_are_returned_only_when_asked():
    model, parent = twins()
    pixels, noise = inputs()
    assert model(pixels, noise=noise).hidden_states is None
    full = model(pixels, noise=noise, output_hidden_states=True).hidden_states
    ref = parent(pixels, noise=noise, output_hidden_states=True).hidden_states
    assert len(full) == len(ref) == 5
    for a, b in zip(full, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    picked = model(pixels, noise=noise, output_hidden_states=[0, -1]).hidden_states
    assert [h is not None for h in picked] == [True, False, False, False, True]
    embeddings = model(pixels, noise=noise, output_hidden_states=0).hidden_states  # an index, not False
    assert [h is not None for h in embeddings] == [True, False, False, False, False]


def test_several_reference_layers_average_their_terms():
    model, parent = twins(magma_reference_layers=[0, 1], magma_target_layer=3)
    pixels, noise = inputs()
    out = model(pixels, noise=noise)
    hs = parent(pixels, noise=noise, output_hidden_states=True).hidden_states
    pooled = [h[:, 1:].mean(1) for h in hs]
    expected = (magma_loss(pooled[1], pooled[4]) + magma_loss(pooled[2], pooled[4])) / 2
    torch.testing.assert_close(out.magma_loss, expected)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"magma_reference_layers": [4]}, "magma_reference_layers"),
        ({"magma_reference_layers": [-1]}, "magma_reference_layers"),
        ({"magma_reference_layers": []}, "magma_reference_layers"),
        ({"magma_reference_layers": ["2"]}, "magma_reference_layers"),
        ({"magma_target_layer": 4}, "magma_target_layer"),
        ({"magma_target_layer": -1}, "magma_target_layer"),
        ({"magma_reference_layers": [3], "magma_target_layer": 3}, "magma_target_layer"),
        ({"magma_reference_layers": [1, 2], "magma_target_layer": 2}, "magma_target_layer"),
        ({"magma_weight": -0.1}, "magma_weight"),
        ({"magma_weight": float("nan")}, "magma_weight"),
        ({"uniformity_weight": -1.0}, "uniformity_weight"),
        ({"num_hidden_layers": 1}, "num_hidden_layers"),
    ],
)
def test_invalid_settings_raise_at_construction(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ViTMAEWithMAGMA(tiny_config(**kwargs))


def test_checkpoint_round_trips_with_the_parent(tmp_path):
    model, parent = twins(magma_reference_layers=[1], magma_weight=0.5, uniformity_weight=0.01)
    parent.save_pretrained(tmp_path / "parent")
    loaded, info = ViTMAEWithMAGMA.from_pretrained(tmp_path / "parent", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    for key, value in parent.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)

    model.save_pretrained(tmp_path / "magma")
    assert (tmp_path / "magma" / "model.safetensors").exists()
    config = json.loads((tmp_path / "magma" / "config.json").read_text())
    assert config["model_type"] == "vit_mae"
    assert config["magma_reference_layers"] == [1] and config["magma_target_layer"] == 3
    assert config["magma_weight"] == 0.5 and config["uniformity_weight"] == 0.01
    back, info = ViTMAEForPreTraining.from_pretrained(tmp_path / "magma", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    for key, value in model.state_dict().items():
        torch.testing.assert_close(back.state_dict()[key], value, rtol=0, atol=0)

    restored = ViTMAEWithMAGMA.from_pretrained(tmp_path / "magma")
    assert restored.config.magma_reference_layers == [1]
    assert restored.magma.reference_layers == [1] and restored.magma.target_layer == 3
    assert restored.config.magma_weight == 0.5 and restored.config.uniformity_weight == 0.01
    pixels, noise = inputs()
    torch.testing.assert_close(restored(pixels, noise=noise).loss, model(pixels, noise=noise).loss)


def test_legacy_key_names_load_with_no_missing_keys(tmp_path):
    # Checkpoints on the Hub (e.g. facebook/vit-mae-base) use the v4 key names; the parent's renames must apply
    # to the subclass as well.
    model, _ = twins()
    model.save_pretrained(tmp_path)
    keys = load_file(tmp_path / "model.safetensors").keys()
    assert any("encoder.layer.0.attention.attention.query" in k for k in keys)
    _, info = ViTMAEWithMAGMA.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]


def test_automodel_loads_plain_classes_without_hf_magma(tmp_path):
    model, _ = twins()
    model.save_pretrained(tmp_path)
    reference = {k: v for k, v in model.state_dict().items()}
    torch.save(reference, tmp_path / "expected.pt")
    script = textwrap.dedent(
        f"""
        import sys, torch
        from transformers import AutoModel, AutoModelForPreTraining
        encoder = AutoModel.from_pretrained({str(tmp_path)!r})
        full = AutoModelForPreTraining.from_pretrained({str(tmp_path)!r})
        assert "hf_magma" not in sys.modules, "hf_magma was imported"
        assert type(encoder).__name__ == "ViTMAEModel", type(encoder)
        assert type(full).__name__ == "ViTMAEForPreTraining", type(full)
        expected = torch.load({str(tmp_path / "expected.pt")!r})
        for key, value in full.state_dict().items():
            assert torch.equal(value, expected[key]), key
        for key, value in encoder.state_dict().items():
            assert torch.equal(value, expected["vit." + key]), key
        print("ok", len(expected))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok")


def test_bf16_autocast_forward_is_finite():
    model, _ = twins(uniformity_weight=0.01)
    pixels, noise = inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(pixels, noise=noise)
    assert out.magma_loss.dtype == torch.float32
    assert torch.isfinite(out.loss)
    out.loss.backward()


def test_out_of_range_hidden_state_indices_are_an_error():
    config = tiny_config()
    model = ViTMAEWithMAGMA(config).eval()
    pixels, noise = inputs(batch=2)
    count = config.num_hidden_layers + 1
    for index in (count, 99, -count - 1):
        with pytest.raises(ValueError, match=rf"asks for hidden states \[{index}\].*returns {count}"):
            model(pixels, noise=noise, output_hidden_states=[index])
    out = model(pixels, noise=noise, output_hidden_states=[-1])
    assert out.hidden_states[-1] is not None and out.hidden_states[0] is None


def test_return_dict_false_gives_a_tuple_like_the_parent():
    model, parent = twins()
    pixels, noise = inputs(batch=2)
    ours = model(pixels, noise=noise, return_dict=False)
    theirs = parent(pixels, noise=noise, return_dict=False)
    assert isinstance(ours, tuple) and isinstance(theirs, tuple)
    for mine, reference in zip(ours[: len(theirs)], theirs, strict=True):
        torch.testing.assert_close(mine, reference)
    assert model(pixels, noise=noise).loss.item() == ours[0].item()


def test_a_mask_ratio_that_hides_every_patch_is_refused_at_the_start():
    with pytest.raises(ValueError, match=r"mask_ratio 0.99 keeps int\(16 x 0.01\) = 0 of the 16 patches"
                                         r".*--mask_ratio"):
        ViTMAEWithMAGMA(tiny_config(mask_ratio=0.99))
    ViTMAEWithMAGMA(tiny_config(mask_ratio=0.9))  # one patch of 16 stays visible


def test_gradient_checkpointing_leaves_the_magma_term_and_its_gradients_unchanged():
    torch.manual_seed(0)
    plain = ViTMAEWithMAGMA(tiny_config(uniformity_weight=0.5))
    checkpointed = ViTMAEWithMAGMA(tiny_config(uniformity_weight=0.5))
    checkpointed.load_state_dict(plain.state_dict())
    checkpointed.activation_checkpointing_enable()  # what the Trainer calls for --gradient_checkpointing
    pixels, noise = inputs()
    terms, forward_runs = {}, {}
    for name, model in (("plain", plain), ("checkpointed", checkpointed)):
        model.train()
        runs = []
        next(model.vit.layers[0].children()).register_forward_hook(lambda *_, runs=runs: runs.append(1))
        parameters = [p for p in model.parameters() if p.requires_grad]
        out = model(pixels, noise=noise)
        grads = torch.autograd.grad(out.magma_loss, parameters, allow_unused=True)
        out = model(pixels, noise=noise)
        out.loss.backward()
        terms[name], forward_runs[name] = (out.magma_loss.detach(), grads, [p.grad for p in parameters]), len(runs)
    assert checkpointed.vit.layers[0].gradient_checkpointing and not plain.vit.layers[0].gradient_checkpointing
    # Two forwards, each followed by a backward: checkpointing runs the first block again in each backward.
    assert forward_runs == {"plain": 2, "checkpointed": 4}
    (term, term_grads, loss_grads), (term_c, term_grads_c, loss_grads_c) = terms["plain"], terms["checkpointed"]
    assert term > 0
    torch.testing.assert_close(term_c, term, rtol=0, atol=0)
    assert sum(g is not None for g in term_grads) > 10  # the term reaches the blocks it reads
    for g, g_c in zip(term_grads, term_grads_c, strict=True):
        assert (g is None) == (g_c is None)
        if g is not None:
            torch.testing.assert_close(g_c, g, rtol=1e-6, atol=1e-7)
    for g, g_c in zip(loss_grads, loss_grads_c, strict=True):
        torch.testing.assert_close(g_c, g, rtol=1e-6, atol=1e-7)
