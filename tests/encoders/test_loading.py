"""Loading the encoder of a pretraining checkpoint drops the decoder's weights without a load report, while a
real mismatch is still reported."""

import logging

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from hf_magma import ViTMAEWithMAGMA
from hf_magma.encoders.loading import load_encoder


@pytest.fixture
def load_report(caplog):
    """The warnings transformers logs (its loggers do not propagate by default), as text."""
    transformers.utils.logging.enable_propagation()
    caplog.set_level(logging.WARNING, logger="transformers")
    yield lambda: caplog.text
    transformers.utils.logging.disable_propagation()


def checkpoint(path, config):
    model = ViTMAEWithMAGMA(config)
    model.save_pretrained(path)
    return model


def test_decoder_weights_are_dropped_without_a_report(tmp_path, load_report, vit_mae_config):
    model = checkpoint(tmp_path, vit_mae_config())
    assert any(key.startswith("decoder.") for key in load_file(tmp_path / "model.safetensors"))
    encoder = load_encoder(tmp_path)
    output = load_report()
    assert "LOAD REPORT" not in output and "UNEXPECTED" not in output and "decoder" not in output, output
    for key, value in model.vit.state_dict().items():  # the encoder is complete, legacy key names converted
        torch.testing.assert_close(encoder.state_dict()[key], value, rtol=0, atol=0)


def test_a_real_mismatch_is_still_reported(tmp_path, load_report, vit_mae_config):
    checkpoint(tmp_path, vit_mae_config())
    weights = load_file(tmp_path / "model.safetensors")
    weights["vit.stray_head.weight"] = torch.zeros(3)
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    load_encoder(tmp_path)
    output = load_report()
    assert "LOAD REPORT" in output and "stray_head.weight" in output and "UNEXPECTED" in output, output
    assert "decoder" not in output  # only the real mismatch
