"""MAGMA on a text encoder: a tiny BERT masked language model trained with the term added in two lines.

The regulariser reads the model's ``hidden_states`` and pools each block's tokens with the attention mask, so
padding never enters the representations. Everything is built in code (vocabulary, model, data): no downloads.

    python examples/text_mlm_magma.py
"""

from __future__ import annotations

import random
import tempfile

import torch
from transformers import BertConfig, BertForMaskedLM, Trainer, TrainingArguments

from hf_magma import MAGMARegularizer

SUBJECTS = ["the cat", "a dog", "the old man", "my sister", "a small bird", "the teacher", "our neighbour"]
VERBS = ["sees", "likes", "follows", "paints", "finds", "watches"]
OBJECTS = ["the river", "a red ball", "the tall tree", "an open window", "the quiet street", "a blue boat"]
ENDINGS = ["", "every morning", "in the rain", "after school", "near the old bridge"]
SPECIAL_TOKENS = ["[PAD]", "[CLS]", "[SEP]", "[MASK]"]
PAD, CLS, SEP, MASK = range(4)


def make_sentences(count: int, seed: int = 0) -> list[str]:
    """Simple sentences of varying length, so batches need padding."""
    rng = random.Random(seed)
    return [
        " ".join(filter(None, [rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS), rng.choice(ENDINGS)]))
        for _ in range(count)
    ]


def build_vocabulary(sentences: list[str]) -> dict[str, int]:
    words = sorted({word for sentence in sentences for word in sentence.split()})
    return {token: index for index, token in enumerate(SPECIAL_TOKENS + words)}


class MaskedLanguageModelingCollator:
    """Word ids -> padded ``input_ids``/``attention_mask`` with 15% of the words replaced by [MASK] as ``labels``."""

    def __init__(self, vocabulary: dict[str, int], mask_probability: float = 0.15, seed: int = 0) -> None:
        self.vocabulary = vocabulary
        self.mask_probability = mask_probability
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, sentences: list[str]) -> dict[str, torch.Tensor]:
        ids = [[CLS, *(self.vocabulary[w] for w in s.split()), SEP] for s in sentences]
        length = max(len(row) for row in ids)
        input_ids = torch.full((len(ids), length), PAD)
        attention_mask = torch.zeros(len(ids), length, dtype=torch.long)
        for i, row in enumerate(ids):
            input_ids[i, : len(row)] = torch.tensor(row)
            attention_mask[i, : len(row)] = 1
        words = attention_mask.bool() & (input_ids != CLS) & (input_ids != SEP)
        masked = words & (torch.rand(input_ids.shape, generator=self.generator) < self.mask_probability)
        labels = torch.where(masked, input_ids, torch.full_like(input_ids, -100))
        return {"input_ids": input_ids.masked_fill(masked, MASK), "attention_mask": attention_mask, "labels": labels}


class MAGMAMaskedLMTrainer(Trainer):
    """A `Trainer` that adds ``magma_weight * MAGMA`` to the model's loss and logs the term as ``magma_loss``."""

    def __init__(self, *args, regularizer: MAGMARegularizer, magma_weight: float = 1.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.regularizer = regularizer
        self.magma_weight = magma_weight
        self._magma_values: list[float] = []

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs, output_hidden_states=True)
        magma = self.regularizer(outputs.hidden_states, attention_mask=inputs["attention_mask"])
        loss = outputs.loss + self.magma_weight * magma
        if model.training:
            self._magma_values.append(magma.item())
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self._magma_values and "loss" in logs:
            logs["magma_loss"] = sum(self._magma_values) / len(self._magma_values)
            self._magma_values = []
        super().log(logs, start_time)


def main(
    max_steps: int = 30, magma_weight: float = 1.0, logging_steps: int = 5, output_dir: str | None = None,
    seed: int = 0,
) -> list[dict]:
    """Train the tiny BERT for ``max_steps`` steps with MAGMA on; returns the Trainer's log history."""
    sentences = make_sentences(512, seed=seed)
    vocabulary = build_vocabulary(sentences)
    config = BertConfig(
        vocab_size=len(vocabulary),
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
        pad_token_id=PAD,
    )
    torch.manual_seed(seed)
    model = BertForMaskedLM(config)
    # Block 1 is the reference, block 2 (the last) is regularised; tokens are averaged under the attention mask.
    regularizer = MAGMARegularizer(reference_layers=[1], target_layer=2, pooling="masked_mean")

    with tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(
            output_dir=output_dir or scratch,
            max_steps=max_steps,
            per_device_train_batch_size=32,
            learning_rate=2e-3,
            logging_steps=logging_steps,
            save_strategy="no",
            report_to="none",
            remove_unused_columns=False,
            use_cpu=True,
            seed=seed,
            disable_tqdm=True,
        )
        trainer = MAGMAMaskedLMTrainer(
            model=model,
            args=args,
            train_dataset=sentences,
            data_collator=MaskedLanguageModelingCollator(vocabulary, seed=seed),
            regularizer=regularizer,
            magma_weight=magma_weight,
        )
        trainer.train()
    return trainer.state.log_history


if __name__ == "__main__":
    for entry in main():
        if "magma_loss" in entry:
            print(f"step {entry['step']:3d}  loss {entry['loss']:.4f}  magma_loss {entry['magma_loss']:.5f}")
