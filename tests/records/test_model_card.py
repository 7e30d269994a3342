"""Model cards: rendering, metadata, evaluation results round trip, figures, packaging of the template."""

from __future__ import annotations

from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from transformers import TrainingArguments

from hf_magma.records.card_results import add_evaluation_results, add_figures
from hf_magma.records.model_card import create_model_card, magma_method_name, template_text
from tests.helpers import ROOT

SECRET = "hf_doNotLeakThisToken987654321"


@pytest.fixture
def tiny_config(vit_mae_config):
    return lambda **overrides: vit_mae_config(**{"num_hidden_layers": 4, **overrides})


@pytest.fixture
def card_dir(tiny_config, tmp_path) -> Path:
    args = TrainingArguments(str(tmp_path), hub_model_id="org/m-mae-tiny", hub_token=SECRET, report_to="none")
    args.magma_start_epoch, args.magma_epochs = 10, 100  # what MAGMATrainingArguments adds
    create_model_card(
        output_dir=tmp_path,
        model_config=tiny_config(magma_reference_layers=[1, 2], magma_target_layer=3, magma_weight=0.5),
        training_args=args,
        dataset_name="zalando-datasets/fashion_mnist",
        train_summary={"global_step": 40, "epoch": 2.0, "loss": 0.61234, "magma_loss": 0.0123},
    )
    return tmp_path


def test_card_states_what_was_trained(card_dir):
    text = (card_dir / "README.md").read_text()
    card = ModelCard.load(card_dir / "README.md")
    assert card.data.library_name == "transformers"
    assert {"vit-mae", "magma", "self-supervised", "m-mae"} <= set(card.data.tags)
    assert card.data.datasets == ["zalando-datasets/fashion_mnist"]
    assert card.data.license == "apache-2.0"
    assert "pretrained with **M-MAE**" in text
    assert "| reference layers (0-based blocks) | 1, 2 |" in text
    assert "| regularised (target) layer | 3 |" in text
    assert "| MAGMA weight (lambda) | 0.5 |" in text
    assert "| MAGMA start epoch (e_st) | 10 |" in text and "| MAGMA duration in epochs (e_dur) | 100 |" in text
    assert "| uniformity weight (mu) | 0 |" in text
    assert "| optimisation steps | 40 |" in text and "| final loss | 0.6123 |" in text
    assert 'AutoModel.from_pretrained("org/m-mae-tiny", subfolder="encoder")' in text
    assert 'ViTMAEWithMAGMA.from_pretrained("org/m-mae-tiny")' in text
    assert "Dondera, Alin and Singh, Anuj and Jamali-Rad, Hadi" in text and "2412.02871" in text
    assert "No evaluation results recorded yet" in text
    assert SECRET not in text


@pytest.mark.parametrize(
    ("magma", "uniformity", "name"),
    [(1.0, 0.0, "M-MAE"), (1.0, 0.01, "MU-MAE"), (0.0, 0.01, "U-MAE"), (0.0, 0.0, "MAE")],
)
def test_method_follows_the_weights(tiny_config, tmp_path, magma, uniformity, name):
    assert magma_method_name(magma, uniformity) == name
    args = TrainingArguments(str(tmp_path), report_to="none")
    args.magma_weight, args.uniformity_weight = magma, uniformity  # the training weights win over the config's
    card = create_model_card(output_dir=tmp_path, model_config=tiny_config(), training_args=args, save=False)
    assert f"pretrained with **{name}**" in card.text
    assert name.lower() in card.data.tags
    assert not (tmp_path / "README.md").exists()


def test_evaluation_results_round_trip(card_dir):
    before = ModelCard.load(card_dir / "README.md")
    add_evaluation_results(card_dir, {"linear_accuracy": 0.432, "knn_accuracy": 0.407}, dataset_name="cifar100",
                           dataset_split="test")
    add_evaluation_results(card_dir, {"linear_accuracy": 0.451}, dataset_name="cifar100", dataset_split="test")
    add_evaluation_results(card_dir / "README.md", {"knn_accuracy": 0.6}, dataset_name="stl10", dataset_split="test")

    card = ModelCard.load(card_dir / "README.md")
    results = {(r.dataset_name, r.metric_name): r.metric_value for r in card.data.eval_results}
    assert results == {("cifar100", "knn_accuracy"): 0.407, ("cifar100", "linear_accuracy"): 0.451,
                       ("stl10", "knn_accuracy"): 0.6}
    assert all(r.task_type == "image-classification" and r.dataset_split == "test" for r in card.data.eval_results)
    # model-index metadata as the Hub reads it
    assert card.data.to_dict()["model-index"][0]["name"] == "m-mae-tiny"
    assert "| image-classification | cifar100 | test | linear_accuracy | 0.451 |  |" in card.text
    assert "0.432" not in card.text and "No evaluation results recorded yet" not in card.text
    # the rest of the card is untouched
    assert card.data.tags == before.data.tags and card.data.datasets == before.data.datasets
    assert card.text.split("## Evaluation")[0] == before.text.split("## Evaluation")[0]
    assert card.text.split("## How to use")[1] == before.text.split("## How to use")[1]


def test_a_result_measured_with_other_labels_replaces_the_old_one(card_dir):
    for count, value in ((12, 0.4), (30, 0.5)):
        add_evaluation_results(
            card_dir, {"linear_accuracy_1pct": value}, dataset_name="cifar100", dataset_split="test",
            metric_args={"linear_accuracy_1pct": {"labelled examples": count}},
        )
    card = ModelCard.load(card_dir / "README.md")
    assert [(r.metric_value, r.metric_args) for r in card.data.eval_results] == [(0.5, {"labelled examples": 30})]
    assert card.data.to_dict()["model-index"][0]["results"][0]["metrics"][0]["args"] == {"labelled examples": 30}
    assert "| linear_accuracy_1pct | 0.5 | labelled examples 30 |" in card.text


def test_evaluation_results_bad_input(card_dir, tmp_path):
    with pytest.raises(ValueError, match="empty"):
        add_evaluation_results(card_dir, {}, dataset_name="d", dataset_split="test")
    with pytest.raises(ValueError, match="finite number"):
        add_evaluation_results(card_dir, {"linear_accuracy": float("nan")}, dataset_name="d", dataset_split="test")
    with pytest.raises(FileNotFoundError, match="create one first"):
        add_evaluation_results(tmp_path / "nowhere", {"a": 1.0}, dataset_name="d", dataset_split="test")


def test_figures_are_embedded_and_kept(card_dir):
    (card_dir / "figures").mkdir()
    (card_dir / "figures" / "pacmap.png").write_bytes(b"\x89PNG\r\n")
    (card_dir / "figures" / "keys.png").write_bytes(b"\x89PNG\r\n")
    add_figures(card_dir, {"PaCMAP of the CLS features": "figures/pacmap.png"})
    add_evaluation_results(card_dir, {"linear_accuracy": 0.5}, dataset_name="cifar100", dataset_split="test")
    card = add_figures(card_dir, {"Attention-key PCA": "figures/keys.png"})
    assert "![PaCMAP of the CLS features](figures/pacmap.png)" in card.text
    assert "![Attention-key PCA](figures/keys.png)" in card.text
    assert card.data.eval_results[0].metric_value == 0.5
    with pytest.raises(FileNotFoundError, match="missing.png"):
        add_figures(card_dir, {"gone": "missing.png"})
    with pytest.raises(ValueError, match="outside"):
        add_figures(card_dir, {"escape": "../x.png"})


def test_recreating_the_card_keeps_results_and_figures_via_the_trainer_path(tiny_config, card_dir):
    from hf_magma.records.card_results import read_card_extras

    (card_dir / "fig.png").write_bytes(b"\x89PNG")
    add_figures(card_dir, {"curves": "fig.png"})
    add_evaluation_results(card_dir, {"knn_accuracy": 0.3}, dataset_name="cifar100", dataset_split="test")
    results, figures = read_card_extras(card_dir)
    card = create_model_card(
        output_dir=card_dir, model_config=tiny_config(), eval_results=results, figures=figures, model_name="m-mae-tiny"
    )
    assert card.data.eval_results[0].metric_value == 0.3 and "![curves](fig.png)" in card.text


def test_template_ships_with_the_package_and_in_model_cards():
    root = ROOT
    assert (root / "model_cards" / "m-mae.md").read_text() == template_text()
    pyproject = (root / "pyproject.toml").read_text()
    assert '"templates/*.md"' in pyproject
