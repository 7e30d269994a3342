"""transformers' utilities read `forward`'s signature: ViTMAEWithMAGMA's must carry the parent's, as objects."""

import inspect
import typing

import torch
from transformers import ViTMAEForPreTraining
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs

from hf_magma import ViTMAEWithMAGMA


def test_forward_has_the_parents_parameters_and_annotations():
    parent, ours = inspect.signature(ViTMAEForPreTraining.forward), inspect.signature(ViTMAEWithMAGMA.forward)
    parent_hints, our_hints = typing.get_type_hints(ViTMAEForPreTraining.forward), typing.get_type_hints(
        ViTMAEWithMAGMA.forward)
    for name, parameter in parent.parameters.items():
        assert name in ours.parameters, name
        assert ours.parameters[name].kind == parameter.kind and ours.parameters[name].default == parameter.default
        if name != "self":
            assert our_hints[name] == parent_hints[name], name
    # The annotation is the object itself (not a string left by `from __future__ import annotations`).
    assert ours.parameters["kwargs"].annotation == Unpack[TransformersKwargs]
    assert ours.parameters["kwargs"].annotation == parent.parameters["kwargs"].annotation
    assert issubclass(our_hints["return"], parent_hints["return"])


def test_output_attentions_through_the_typed_kwargs(vit_mae_config):
    config = vit_mae_config(attn_implementation="eager")
    assert "output_attentions" in TransformersKwargs.__annotations__
    outputs = ViTMAEWithMAGMA(config)(torch.randn(2, 3, 16, 16), output_attentions=True)
    assert outputs.attentions is not None and len(outputs.attentions) == 2
    assert outputs.attentions[0].shape == (2, 2, 1 + 4, 1 + 4)  # CLS + the 4 visible of 16 patches
