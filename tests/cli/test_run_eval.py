import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from PIL import Image
from transformers import BertConfig, BertModel

from hf_magma import ViTMAEWithMAGMA
from hf_magma.data.columns import check_label_feature
from hf_magma.encoders.features import extract_features
from hf_magma.encoders.loading import load_encoder
from hf_magma.evaluation import image_classifier_from_encoder
from hf_magma.evaluation.knn import knn_accuracy


@pytest.fixture(scope="module")
def run_eval(load_script):
    return load_script("scripts/run_eval.py")

@pytest.fixture
def checkpoint(vit_mae_config, tmp_path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "tiny-m-mae"
    ViTMAEWithMAGMA(vit_mae_config()).save_pretrained(path)
    return path


def write_imagefolder(root: Path, per_class: int, seed: int) -> None:
    """Two classes told apart by brightness: dark and bright noise images."""
    rng = np.random.default_rng(seed)
    for label, (low, high) in (("dark", (0, 90)), ("bright", (160, 255))):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(low, high, size=(16, 16, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.png")


@pytest.fixture
def image_dirs(tmp_path) -> tuple[Path, Path]:
    train, test = tmp_path / "train", tmp_path / "test"
    write_imagefolder(train, 12, seed=0)
    write_imagefolder(test, 5, seed=1)
    return train, test


def run(run_eval, argv: list[str]) -> dict[str, float]:
    return run_eval.main(*run_eval.make_parser().parse_args_and_config(argv))


def base_args(checkpoint, image_dirs, output_dir) -> list[str]:
    train, test = image_dirs
    return [
        "--model_name_or_path", str(checkpoint),
        "--train_dir", str(train),
        "--validation_dir", str(test),
        "--output_dir", str(output_dir),
        "--batch_size", "7",
        "--knn_k", "3",
        "--linear_epochs", "30",
        "--linear_milestones", "20", "25",
        "--linear_batch_size", "8",
        "--label_fractions", "0.5", "1",
        "--report_to", "none",
    ]  # fmt: skip


def test_run_eval_end_to_end_updates_the_checkpoints_card(run_eval, checkpoint, image_dirs, tmp_path, capsys):
    output_dir = tmp_path / "eval"
    results = run(run_eval, base_args(checkpoint, image_dirs, output_dir))

    assert set(results) == {"knn_accuracy", "linear_accuracy", "linear_accuracy_50pct"}
    # Brightness separates the classes even through a random encoder.
    assert results["knn_accuracy"] == 1.0
    assert results["linear_accuracy"] >= 0.9
    record = json.loads((output_dir / "eval_results.json").read_text())
    assert record["results"] == results
    assert (record["num_train"], record["num_test"], record["feature_dim"]) == (24, 10, 32)
    assert record["test_split"] == "validation"
    assert record["label_subsets"] == {
        "linear_accuracy_50pct": {"requested_fraction": 0.5, "num_labelled": 12, "fraction": 0.5},
        "linear_accuracy": {"requested_fraction": 1.0, "num_labelled": 24, "fraction": 1.0},
    }
    printed = capsys.readouterr().out
    assert "knn_accuracy" in printed
    assert "(12 labels, 50 % of the training set)" in printed

    card = ModelCard.load(checkpoint / "README.md")
    recorded = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert recorded == pytest.approx(results)
    # Each result carries the labels it was measured with, in the metadata and in the card's table.
    measured = {r.metric_name: r.metric_args for r in card.data.eval_results}
    assert measured["linear_accuracy_50pct"] == {"labelled examples": 12, "label fraction": 0.5}
    assert measured["knn_accuracy"] is None
    assert "labelled examples 12, label fraction 0.5" in card.text
    assert {r.dataset_split for r in card.data.eval_results} == {"validation"}
    assert "knn_accuracy" in card.text


def test_run_eval_writes_figures_into_the_checkpoint_and_its_card(run_eval, checkpoint, image_dirs, tmp_path):
    results = run(run_eval, [*base_args(checkpoint, image_dirs, tmp_path / "eval"), "--figures", "pacmap,attention"])
    assert (checkpoint / "figures" / "pacmap.png").is_file()
    assert (checkpoint / "figures" / "attention_maps.png").is_file()
    card = ModelCard.load(checkpoint / "README.md")
    assert "figures/pacmap.png" in card.text and "figures/attention_maps.png" in card.text
    assert {r.metric_name for r in card.data.eval_results} == set(results)  # the results survive the figures


def test_run_eval_figures_need_a_local_checkpoint(run_eval, image_dirs, tmp_path):
    args = base_args("org/not-local", image_dirs, tmp_path / "eval")
    with pytest.raises(ValueError, match="local checkpoint"):
        run(run_eval, [*args, "--figures", "pacmap"])
    with pytest.raises(ValueError, match="Unknown figure"):
        run(run_eval, [*args, "--figures", "histogram"])


def test_run_eval_pushes_the_card(run_eval, checkpoint, image_dirs, tmp_path, hub_server):
    args = base_args(checkpoint, image_dirs, tmp_path / "eval") + ["--linear_epochs", "2", "--linear_milestones", "1"]
    with pytest.raises(ValueError, match="--hub_model_id"):
        run(run_eval, args + ["--push_to_hub"])
    results = run(run_eval, args + ["--push_to_hub", "--hub_model_id", "someone/tiny-m-mae"])
    pushed = ModelCard(hub_server.files("someone/tiny-m-mae")["README.md"].decode())
    assert {r.metric_name: r.metric_value for r in pushed.data.eval_results} == pytest.approx(results)


@pytest.mark.slow
def test_run_eval_finetunes(run_eval, checkpoint, image_dirs, tmp_path):
    args = base_args(checkpoint, image_dirs, tmp_path / "eval")
    args += ["--finetune", "--max_steps", "3", "--per_device_train_batch_size", "8", "--linear_epochs", "0"]
    results = run(run_eval, args)
    assert 0.0 <= results["finetune_accuracy"] <= 1.0
    assert (tmp_path / "eval" / "model.safetensors").exists() or any((tmp_path / "eval").glob("checkpoint-*"))


def test_run_eval_at_another_resolution_evaluates_and_finetunes_there(run_eval, checkpoint, image_dirs, tmp_path):
    args = base_args(checkpoint, image_dirs, tmp_path / "eval") + ["--image_size", "24"]
    args += ["--finetune", "--max_steps", "2", "--per_device_train_batch_size", "8", "--linear_epochs", "0"]
    results = run(run_eval, args)
    assert 0.0 <= results["finetune_accuracy"] <= 1.0 and "knn_accuracy" in results
    record = json.loads((tmp_path / "eval" / "eval_results.json").read_text())
    assert record["settings"]["image_size"] == 24
    saved = json.loads(next((tmp_path / "eval").glob("checkpoint-*/config.json")).read_text())
    assert saved["image_size"] == 24  # the fine-tuned classifier is a plain ViT at that size
    # k-NN on the features at that size (equal to encoder/'s through AutoModel: tests/encoders/test_other_sizes.py)
    train, test = (datasets.load_dataset("imagefolder", data_dir=str(folder))["train"] for folder in image_dirs)
    train_x, train_y = extract_features(str(checkpoint), train, image_size=24, show_progress=False)
    test_x, test_y = extract_features(str(checkpoint), test, image_size=24, show_progress=False)
    assert results["knn_accuracy"] == knn_accuracy(train_x, train_y, test_x, test_y, k=3)
    with pytest.raises(ValueError, match="--image_size 22 is not a multiple of the checkpoint's patch size 4: give "
                                         "e.g. 24"):
        run(run_eval, base_args(checkpoint, image_dirs, tmp_path / "eval2") + ["--image_size", "22"])


@pytest.mark.slow
def test_finetuning_skips_counts_and_names_unreadable_images(run_eval, checkpoint, image_dirs, tmp_path, caplog):
    train, test = image_dirs
    (train / "dark" / "broken_train.png").write_bytes(b"not an image")
    (test / "bright" / "broken_test.png").write_bytes(b"\x89PNG truncated")
    args = base_args(checkpoint, image_dirs, tmp_path / "eval")
    args += ["--finetune", "--max_steps", "4", "--per_device_train_batch_size", "8", "--linear_epochs", "0"]
    results = run(run_eval, args)
    assert 0.0 <= results["finetune_accuracy"] <= 1.0
    assert "broken_train.png" in caplog.text and "broken_test.png" in caplog.text
    assert "Fine-tuning left out" in caplog.text and "1 test image(s)" in caplog.text


@pytest.mark.slow
def test_run_eval_finetunes_the_mae_way(run_eval, checkpoint, image_dirs, tmp_path):
    args = base_args(checkpoint, image_dirs, tmp_path / "eval")
    args += ["--finetune", "--max_steps", "3", "--per_device_train_batch_size", "8", "--linear_epochs", "0",
             "--layer_decay", "0.75", "--drop_path_rate", "0.1", "--mixup_alpha", "0.8", "--cutmix_alpha", "1.0",
             "--label_smoothing_factor", "0.1", "--rand_augment_ops", "2", "--rand_augment_group_size", "4",
             "--base_learning_rate", "1e-3", "--lr_scheduler_type", "cosine", "--warmup_steps", "0.34"]
    results = run(run_eval, args)
    assert 0.0 <= results["finetune_accuracy"] <= 1.0
    record = json.loads((tmp_path / "eval" / "eval_results.json").read_text())
    assert record["finetune_settings"]["layer_decay"] == 0.75
    assert record["finetune_settings"]["learning_rate"] == pytest.approx(1e-3 * 8 / 256)


def test_finetune_options_need_finetune(run_eval, checkpoint, image_dirs, tmp_path):
    with pytest.raises(ValueError, match=r"--layer_decay, --mixup_alpha only apply to fine-tuning.*--finetune true"):
        run(run_eval, base_args(checkpoint, image_dirs, tmp_path / "eval") + ["--layer_decay", "0.75",
                                                                              "--mixup_alpha", "0.8"])


def test_classifier_gets_every_encoder_weight(checkpoint):
    model = image_classifier_from_encoder(str(checkpoint), num_labels=3)
    encoder = load_encoder(str(checkpoint))
    for name, tensor in encoder.state_dict().items():
        assert torch.equal(model.vit.state_dict()[name], tensor), name
    pixel_values = torch.randn(2, 3, 16, 16)
    model.eval()
    with torch.inference_mode():
        assert model(pixel_values=pixel_values).logits.shape == (2, 3)


def test_dataset_without_labels_is_rejected(run_eval, checkpoint, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(4):
        Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(flat / f"{i}.png")
    args = ["--model_name_or_path", str(checkpoint), "--train_dir", str(flat), "--output_dir", str(tmp_path / "o")]
    with pytest.raises(ValueError, match=r"holds no class folders \(images directly in it\): evaluation needs labels"):
        run(run_eval, args + ["--report_to", "none"])


def test_one_class_folder_is_refused_naming_the_class(run_eval, checkpoint, tmp_path):
    (tmp_path / "train" / "shoes").mkdir(parents=True)
    for i in range(4):
        Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(tmp_path / "train" / "shoes" / f"{i}.png")
    args = ["--model_name_or_path", str(checkpoint), "--train_dir", str(tmp_path / "train"), "--output_dir",
            str(tmp_path / "o"), "--report_to", "none"]
    with pytest.raises(ValueError, match=r"holds one class folder \(shoes\): evaluation needs labels from two"):
        run(run_eval, args)


def test_label_column_that_is_not_integer_classes_is_rejected(checkpoint):
    images = [Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8))] * 3
    data = datasets.Dataset.from_dict({"image": images, "label": ["cat", "dog", "cat"]})
    with pytest.raises(ValueError, match="'label' holds .*string.*not integer classes"):
        check_label_feature(data.features, "label")
    with pytest.raises(ValueError, match="not integer classes"):
        extract_features(str(checkpoint), data, show_progress=False)
    data = data.class_encode_column("label")
    features, labels = extract_features(str(checkpoint), data, show_progress=False)
    assert features.shape == (3, 32) and labels.tolist() == [0, 1, 0]


def test_empty_split_is_rejected(checkpoint):
    data = datasets.Dataset.from_dict({"image": [], "label": []}, features=datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])}
    ))
    with pytest.raises(ValueError, match="empty"):
        extract_features(str(checkpoint), data, show_progress=False)


def test_checkpoint_that_is_not_a_vit_is_rejected(run_eval, image_dirs, tmp_path):
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                         vocab_size=50)).save_pretrained(tmp_path / "bert")
    with pytest.raises(ValueError, match="not a ViT"):
        run(run_eval, base_args(tmp_path / "bert", image_dirs, tmp_path / "eval"))


def test_run_eval_on_a_hub_checkpoint(run_eval, checkpoint, image_dirs, tmp_path, hub_server):
    ViTMAEWithMAGMA.from_pretrained(checkpoint).push_to_hub("someone/hub-m-mae")
    output_dir = tmp_path / "eval"
    args = base_args("someone/hub-m-mae", image_dirs, output_dir) + ["--linear_epochs", "2",
                                                                    "--linear_milestones", "1"]
    results = run(run_eval, args + ["--push_to_hub"])
    local = ModelCard.load(output_dir / "README.md")
    pushed = ModelCard(hub_server.files("someone/hub-m-mae")["README.md"].decode())
    for card in (local, pushed):
        assert {r.metric_name: r.metric_value for r in card.data.eval_results} == pytest.approx(results)


def test_run_eval_pixels_scores_the_normalised_pixels(run_eval, image_dirs, tmp_path):
    train, test = image_dirs
    output_dir = tmp_path / "pixels"
    argv = ["--pixels", "--train_dir", str(train), "--validation_dir", str(test), "--output_dir", str(output_dir),
            "--knn_k", "3", "--linear_epochs", "30", "--linear_milestones", "20", "25", "--linear_batch_size", "8",
            "--label_fractions", "0.5", "1", "--report_to", "none"]
    results = run(run_eval, argv)
    assert set(results) == {"knn_accuracy", "linear_accuracy", "linear_accuracy_50pct"}
    assert results["knn_accuracy"] == 1.0 and results["linear_accuracy"] >= 0.9  # brightness is in the pixels
    record = json.loads((output_dir / "eval_results.json").read_text())
    # 28 x 28 (the default: the Fashion-MNIST checkpoints' input) x 3 channels (RGB images), a row per image.
    assert (record["num_train"], record["num_test"], record["feature_dim"]) == (24, 10, 28 * 28 * 3)
    assert record["model_name_or_path"] == "pixels" and record["results"] == results


def test_pixel_features_are_the_eval_transforms_output(image_dirs):
    from hf_magma.data.arguments import ImageDataArguments
    from hf_magma.data.loading import load_image_datasets
    from hf_magma.evaluation.pixels import image_channels, pixel_features, pixel_transform

    train, test = image_dirs
    split = load_image_datasets(ImageDataArguments(train_dir=str(train), validation_dir=str(test)))["validation"]
    transform = pixel_transform(None, 12, num_channels=1)
    features, labels = pixel_features(split, transform, image_column="image", label_column="label", batch_size=3)
    assert features.shape == (10, 144) and labels.tolist() == split["label"]
    assert image_channels(split[0]["image"]) == 3 and image_channels(np.zeros((5, 5), np.uint8)) == 1
    expected = transform(split[4]["image"])  # ViT's defaults: (x / 255 - 0.5) / 0.5
    assert torch.equal(features[4], expected.flatten())
    assert -1 <= features.min() and features.max() <= 1


def test_run_eval_needs_a_checkpoint_unless_pixels(run_eval, image_dirs, tmp_path):
    with pytest.raises(ValueError, match="--model_name_or_path is required .* --pixels"):
        run(run_eval, ["--output_dir", str(tmp_path), "--train_dir", str(image_dirs[0])])
    with pytest.raises(ValueError, match="--pixels .* drop --finetune"):
        run(run_eval, ["--pixels", "--finetune", "--output_dir", str(tmp_path), "--train_dir", str(image_dirs[0])])


def test_a_failed_push_says_the_results_are_saved_and_how_to_push_later(run_eval, checkpoint, image_dirs, tmp_path,
                                                                         hub_server):
    from hf_magma.evaluation import HubPushError

    args = base_args(checkpoint, image_dirs, tmp_path / "eval") + ["--linear_epochs", "2", "--linear_milestones", "1"]
    hub_server.stop()
    with pytest.raises(HubPushError, match=r"(?s)results are saved locally .*eval_results.json.*pushing the card to "
                                           r"someone/down failed.*hf upload someone/down"):
        run(run_eval, args + ["--push_to_hub", "--hub_model_id", "someone/down"])
    assert (tmp_path / "eval" / "eval_results.json").is_file()
