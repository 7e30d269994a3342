"""Card metadata keeps the tags given and the model's own, and the card lists the framework versions."""

import torch
import transformers
from huggingface_hub import ModelCard

from hf_magma import MAGMATrainer, MAGMATrainingArguments, ViTMAEWithMAGMA
from hf_magma.records.model_card import create_model_card


def test_create_model_card_keeps_given_tags_and_lists_versions(tmp_path, vit_mae_config):
    card = create_model_card(output_dir=tmp_path, model_config=ViTMAEWithMAGMA(vit_mae_config()).config,
                             tags=["my-tag", "magma"])
    loaded = ModelCard.load(tmp_path / "README.md")
    assert loaded.data.tags == ["vit-mae", "magma", "self-supervised", "image-feature-extraction", "m-mae", "my-tag"]
    assert "### Framework versions" in card.text
    assert f"- Transformers {transformers.__version__}" in card.text and f"- Pytorch {torch.__version__}" in card.text


def test_trainer_cards_carry_push_tags_and_model_tags(tmp_path, vit_mae_config):
    model = ViTMAEWithMAGMA(vit_mae_config())
    model.add_model_tags(["from-the-model"])
    args = MAGMATrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    trainer = MAGMATrainer(model=model, args=args)
    for kwargs in ({"tags": ["from-push"]}, {}):  # push_to_hub's call, and the pushes during training
        trainer.create_model_card(**kwargs)
        tags = ModelCard.load(tmp_path / "README.md").data.tags
        assert "from-the-model" in tags and "magma" in tags
        assert ("from-push" in tags) == bool(kwargs)
