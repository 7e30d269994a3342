"""The generic regulariser on a text encoder (examples/text_mlm_magma.py): a tiny BERT MLM trained with MAGMA."""

import math

import pytest
import torch
from transformers import BertConfig, BertModel

from hf_magma import MAGMARegularizer, magma_loss
from tests.helpers import ROOT

EXAMPLE = ROOT / "examples" / "text_mlm_magma.py"


@pytest.fixture(scope="module")
def example(load_script):
    return load_script(EXAMPLE)


def test_masked_mean_term_ignores_padding_and_reaches_the_encoder():
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=20, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                                 intermediate_size=64, max_position_embeddings=16)).eval()  # no dropout
    regularizer = MAGMARegularizer([0], 2, pooling="masked_mean")
    ids = torch.tensor([[1, 5, 6, 7, 2, 0, 0], [1, 8, 9, 2, 0, 0, 0], [1, 4, 5, 6, 7, 8, 2], [1, 9, 2, 0, 0, 0, 0]])
    mask = (ids != 0).long()
    out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    term = regularizer(out.hidden_states, attention_mask=mask)

    def pooled(layer):
        hidden = out.hidden_states[layer + 1]
        return torch.stack([hidden[i, : int(mask[i].sum())].mean(dim=0) for i in range(len(ids))])

    torch.testing.assert_close(term, magma_loss(pooled(0), pooled(2)))
    # More padding (other pad ids, longer rows) leaves the term unchanged.
    longer = torch.cat([ids, torch.zeros(4, 3, dtype=torch.long)], dim=1)
    longer_mask = (longer != 0).long()
    again = model(input_ids=longer.masked_fill(longer == 0, 3), attention_mask=longer_mask, output_hidden_states=True)
    torch.testing.assert_close(regularizer(again.hidden_states, attention_mask=longer_mask), term,
                               rtol=1e-5, atol=1e-6)
    term.backward()
    assert model.encoder.layer[2].output.dense.weight.grad.abs().sum() > 0
    assert model.encoder.layer[0].output.dense.weight.grad.abs().sum() > 0


def test_tiny_bert_trains_with_magma_and_logs_the_term(example):
    history = example.main(max_steps=12, magma_weight=1.0, logging_steps=4)
    logged = [entry for entry in history if "loss" in entry and "magma_loss" in entry]
    assert [entry["step"] for entry in logged] == [4, 8, 12]
    assert all(math.isfinite(entry["magma_loss"]) and entry["magma_loss"] > 0 for entry in logged)
    assert logged[-1]["loss"] < logged[0]["loss"]
