import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.decomposition import PCA
from sklearn.metrics import davies_bouldin_score
from transformers import ViTConfig, ViTMAEConfig, ViTModel

import hf_magma
from hf_magma import MAGMATrainer, MAGMATrainingArguments, ViTMAEWithMAGMA
from hf_magma import visualize as viz
from tests.helpers.tiny import tiny_vit_mae_config

pytest.importorskip("matplotlib")


def tiny_config(**overrides) -> ViTMAEConfig:
    settings = dict(image_size=32, num_hidden_layers=3, num_attention_heads=4, decoder_num_attention_heads=4,
                    mask_ratio=0.75)
    return tiny_vit_mae_config(**{**settings, **overrides})


def tiny_model(seed: int, **overrides) -> ViTMAEWithMAGMA:
    torch.manual_seed(seed)
    return ViTMAEWithMAGMA(tiny_config(**overrides)).eval()


def object_images(num_images: int = 2, size: int = 32, channels: int = 3) -> torch.Tensor:
    """A bright rectangle (the object) on a dark textured background, normalised with mean = std = 0.5."""
    gen = torch.Generator().manual_seed(0)
    images = 0.2 * torch.rand(num_images, channels, size, size, generator=gen)
    for i in range(num_images):
        top, left = 4 + 3 * i, 6 + 2 * i
        images[i, :, top : top + 14, left : left + 12] = 0.9
    return (images - 0.5) / 0.5


def read_png(path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def pixels_of(inches: float, dpi: int) -> int:
    """matplotlib's PNG size for a figure dimension: the integer part of inches x dpi."""
    return int(inches * dpi + 1e-6)


def assert_nontrivial(pixels: np.ndarray) -> None:
    assert pixels.std() > 10, "the figure is (nearly) blank"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50, "the figure has almost no distinct colours"


def clustered_features(seed: int, spread: float, num_classes: int = 12, per_class: int = 30, dim: int = 24):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(num_classes), per_class)
    centres = rng.normal(size=(num_classes, dim)) * spread
    features = torch.tensor(centres[labels] + rng.normal(size=(len(labels), dim)), dtype=torch.float32)
    return features, torch.tensor(labels)


# ---------------------------------------------------------------------------------------------------------- PaCMAP


def test_plot_pacmap_png_and_davies_bouldin_match_sklearn(tmp_path):
    checkpoints = {"MAE": clustered_features(0, 1.0), "M-MAE": clustered_features(1, 4.0)}
    out = tmp_path / "pacmap.png"
    panels = viz.plot_pacmap(
        checkpoints, out, num_classes=5, seed=3, linear_accuracy={"M-MAE": 0.69}, panel_size=3.0, legend_width=1.5,
        dpi=60,
    )

    pixels = read_png(out)
    assert pixels.shape[:2] == (pixels_of(3.0, 60), pixels_of(3.0 * 2 + 1.5, 60))
    assert_nontrivial(pixels)

    assert [p.name for p in panels] == ["MAE", "M-MAE"]
    assert panels[1].linear_accuracy == 0.69 and panels[0].linear_accuracy is None
    for panel in panels:
        assert panel.embedding.shape == (5 * 30, 2)
        assert panel.davies_bouldin == pytest.approx(davies_bouldin_score(panel.embedding, panel.labels), rel=1e-12)
    # The same five seeded classes in every panel.
    classes = [sorted(set(p.labels.tolist())) for p in panels]
    assert classes[0] == classes[1] and len(classes[0]) == 5
    assert classes[0] == viz.select_classes([np.arange(12)], 5, seed=3).tolist()
    # Better separated features give tighter clusters.
    assert panels[1].davies_bouldin < panels[0].davies_bouldin


def test_plot_pacmap_feature_space_davies_bouldin(tmp_path):
    features, labels = clustered_features(0, 2.0, num_classes=3)
    (panel,) = viz.plot_pacmap({"run": (features, labels)}, tmp_path / "p.png", davies_bouldin_space="features",
                               dpi=40)
    assert panel.davies_bouldin == pytest.approx(davies_bouldin_score(features.numpy(), labels.numpy()), rel=1e-6)


def test_plot_pacmap_subsamples_and_is_seeded(tmp_path):
    checkpoints = {"run": clustered_features(0, 2.0, num_classes=4, per_class=40)}
    a = viz.plot_pacmap(checkpoints, tmp_path / "a.png", max_samples_per_class=15, seed=1, dpi=40)[0]
    b = viz.plot_pacmap(checkpoints, tmp_path / "b.png", max_samples_per_class=15, seed=1, dpi=40)[0]
    assert np.bincount(a.labels).tolist() == [15, 15, 15, 15]
    np.testing.assert_array_equal(a.embedding, b.embedding)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"linear_accuracy": {"run": 69.0}}, "fraction"),
        ({"linear_accuracy": {"other": 0.5}}, "not among the checkpoints"),
        ({"num_classes": 1}, "num_classes"),
        ({"davies_bouldin_space": "pixels"}, "davies_bouldin_space"),
    ],
)
def test_plot_pacmap_rejects_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        viz.plot_pacmap({"run": clustered_features(0, 2.0)}, tmp_path / "p.png", **kwargs)


def test_plot_pacmap_rejects_bad_inputs(tmp_path):
    features, labels = clustered_features(0, 2.0)
    with pytest.raises(ValueError, match="one label each"):
        viz.plot_pacmap({"run": (features, labels[:-1])}, tmp_path / "p.png")
    with pytest.raises(ValueError, match="at least two"):
        viz.plot_pacmap({"run": (features, torch.zeros_like(labels))}, tmp_path / "p.png")
    with pytest.raises(ValueError, match="NaN"):
        viz.plot_pacmap({"run": (features * float("nan"), labels)}, tmp_path / "p.png")
    with pytest.raises(ValueError, match=r"\.png"):
        viz.plot_pacmap({"run": (features, labels)}, tmp_path / "p.jpg")


# ---------------------------------------------------------------------------------------------- unmasked encoder


def test_keys_are_taken_unmasked_in_patch_order():
    model = tiny_model(0)
    images = object_images(2)
    keys = viz.attention_keys(model, images, layers=[0])[0]

    # Block 0's keys, computed by hand from the embeddings in their original (row-major) order.
    encoder = model.vit
    with torch.no_grad():
        position = encoder.embeddings.position_embeddings
        patches = encoder.embeddings.patch_embeddings(images) + position[:, 1:]
        cls = (encoder.embeddings.cls_token + position[:, :1]).expand(len(images), -1, -1)
        tokens = torch.cat([cls, patches], dim=1)
        block = encoder.layers[0]
        expected = block.attention.k_proj(block.layernorm_before(tokens))[:, 1:]
    assert keys.shape == (2, 64, 32)
    torch.testing.assert_close(keys, expected)
    # The model's own masking settings are left as they were.
    assert model.config.mask_ratio == 0.75
    assert model.training is False


def test_run_unmasked_works_on_a_plain_vit():
    torch.manual_seed(0)
    vit = ViTModel(
        ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64),
        add_pooling_layer=False,
    )
    maps = viz.key_pca_maps(vit, object_images(1))
    assert maps.shape == (1, 2, 4, 4)


def test_inputs_that_do_not_fit_the_model_are_rejected():
    model = tiny_model(0)
    with pytest.raises(ValueError, match="channels"):
        viz.key_pca_maps(model, torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="16x16"):
        viz.key_pca_maps(model, torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        viz.key_pca_maps(model, torch.zeros(3, 32, 32))
    with pytest.raises(ValueError, match="block index"):
        viz.key_pca_maps(model, object_images(1), layers=[3])
    with pytest.raises(ValueError, match="not a ViT"):
        viz.key_pca_maps(torch.nn.Linear(2, 2), object_images(1))


# -------------------------------------------------------------------------------------------------------- key PCA


def test_first_principal_component_matches_sklearn_with_a_fixed_sign():
    tokens = torch.randn(3, 49, 16, dtype=torch.float64)
    scores = viz.first_principal_component(tokens)
    for x, s in zip(tokens, scores, strict=True):
        reference = PCA(n_components=1).fit_transform(x.numpy())[:, 0]
        np.testing.assert_allclose(np.abs(s.numpy()), np.abs(reference), atol=1e-10)
        assert s[s.abs().argmax()] > 0
    torch.testing.assert_close(viz.first_principal_component(-tokens), scores)


def test_key_pca_maps_have_the_patch_grid_shape():
    maps = viz.key_pca_maps(tiny_model(0), object_images(2), layers=[0, -1])
    assert maps.shape == (2, 2, 8, 8)
    assert torch.isfinite(maps).all() and maps.std() > 0


def test_plot_key_pca_png(tmp_path):
    models = {"MAE": tiny_model(0), "M-MAE": tiny_model(1)}
    images = object_images(2)
    out = tmp_path / "keys.png"
    maps = viz.plot_key_pca(models, images, out, image_mean=[0.5] * 3, image_std=[0.5] * 3, panel_size=1.0, dpi=50)
    assert set(maps) == {"MAE", "M-MAE"} and maps["MAE"].shape == (2, 3, 8, 8)
    pixels = read_png(out)
    rows, columns = 2 * 2, 1 + 3
    assert pixels.shape[:2] == (pixels_of(1.0 * (rows + 0.3), 50), pixels_of(1.0 * columns, 50))
    assert_nontrivial(pixels)


# ------------------------------------------------------------------------------------------------ attention maps


def test_attention_rows_sum_to_one_and_implementation_is_restored():
    model = tiny_model(0)
    assert model.config._attn_implementation == "sdpa"
    probs = viz.attention_probabilities(model, object_images(2))
    assert probs.shape == (2, 4, 65, 65)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 4, 65))
    assert model.config._attn_implementation == "sdpa"

    cls = viz.cls_attention_maps(model, object_images(2))
    assert cls.shape == (2, 4, 8, 8)
    torch.testing.assert_close(cls.flatten(2), probs[:, :, 0, 1:])


def test_plot_attention_maps_png(tmp_path):
    models = {"MAE": tiny_model(0), "M-MAE": tiny_model(1, num_attention_heads=2)}
    out = tmp_path / "attention.png"
    maps = viz.plot_attention_maps(models, object_images(1), out, panel_size=1.0, dpi=50)
    assert maps["MAE"].shape == (1, 4, 8, 8) and maps["M-MAE"].shape == (1, 2, 8, 8)
    pixels = read_png(out)
    assert pixels.shape[:2] == (pixels_of(2 + 0.3, 50), pixels_of(1 + 4, 50))
    assert_nontrivial(pixels)


def test_images_for_display():
    images = object_images(2, channels=1)
    shown = viz.images_for_display(images, [0.5], [0.5])
    assert shown.shape == (2, 32, 32, 3) and shown.min() >= 0 and shown.max() <= 1
    np.testing.assert_allclose(shown[..., 0], (images[:, 0] * 0.5 + 0.5).numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="both"):
        viz.images_for_display(images, [0.5], None)


def test_images_for_display_shows_the_chosen_channels():
    images = object_images(2, channels=5)
    mean, std = [0.1, 0.2, 0.3, 0.4, 0.5], [0.5, 0.4, 0.3, 0.2, 0.1]
    shown = viz.images_for_display(images, mean, std, channels=[3, 2, 1])
    for position, channel in enumerate((3, 2, 1)):
        expected = (images[:, channel] * std[channel] + mean[channel]).clamp(0, 1).numpy()
        np.testing.assert_allclose(shown[..., position], expected, atol=1e-6)
    np.testing.assert_allclose(viz.images_for_display(images, mean, std)[..., 2],  # default: the first three
                               (images[:, 2] * 0.3 + 0.3).clamp(0, 1).numpy(), atol=1e-6)
    grey = viz.images_for_display(images, mean, std, channels=[4])
    np.testing.assert_array_equal(grey[..., 0], grey[..., 2])
    for bad in ([5, 0, 1], [0, 1], [-1, 0, 1]):
        with pytest.raises(ValueError, match=r"1 or 3 indices among 0\.\.4 of the 5-channel images"):
            viz.images_for_display(images, mean, std, channels=bad)


# ------------------------------------------------------------------------------------------------ training curves


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A real `trainer_state.json`: 8 MAGMATrainer steps of a tiny ViTMAEWithMAGMA, MAGMA on for steps 3-5."""
    output_dir = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    data = [{"pixel_values": torch.rand(3, 16, 16), "labels": i % 3} for i in range(32)]
    model = ViTMAEWithMAGMA(tiny_config(image_size=16, num_hidden_layers=2))
    args = MAGMATrainingArguments(
        output_dir=str(output_dir), max_steps=8, per_device_train_batch_size=8, learning_rate=1e-3, logging_steps=1,
        magma_start_step=3, magma_steps=3, save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True,
    )
    trainer = MAGMATrainer(model=model, args=args, train_dataset=data, num_labels=3)
    trainer.train()
    trainer.save_state()
    return output_dir


def test_plot_training_curves_from_a_real_run(tmp_path, trained_run):
    state = json.loads((trained_run / "trainer_state.json").read_text())
    assert sum("magma_loss" in entry for entry in state["log_history"]) == 8

    out = tmp_path / "curves.png"
    curves = viz.plot_training_curves({"M-MAE": trained_run}, out, panel_size=2.0, dpi=50)
    steps, magma = curves["M-MAE"]["magma_loss"]
    assert steps.tolist() == list(range(1, 9))  # logged while the weight was 0 too
    assert np.isfinite(magma).all()
    _, weight = curves["M-MAE"]["magma_weight"]
    assert weight.tolist() == [0, 0, 0, 1, 1, 1, 0, 0]
    _, accuracy = curves["M-MAE"]["online_accuracy"]
    assert len(accuracy) == 8 and ((0 <= accuracy) & (accuracy <= 1)).all()

    pixels = read_png(out)
    assert pixels.shape[:2] == (pixels_of(2.0, 50), pixels_of(2.0 * 1.3 * 4, 50))
    assert_nontrivial(pixels)


def test_plot_training_curves_overlays_runs_and_reads_checkpoint_folders(tmp_path, trained_run):
    checkpoint = tmp_path / "other" / "checkpoint-8"
    checkpoint.mkdir(parents=True)
    history = viz.load_log_history(trained_run)
    # A second run that never switches MAGMA on (plain MAE, the term only measured).
    mae = [dict(e, magma_weight=0.0) if "magma_weight" in e else e for e in history]
    (checkpoint / "trainer_state.json").write_text(json.dumps({"log_history": mae}))
    assert viz.find_trainer_state(tmp_path / "other") == checkpoint / "trainer_state.json"

    out = tmp_path / "curves.png"
    curves = viz.plot_training_curves({"MAE": tmp_path / "other", "M-MAE": trained_run}, out, x_axis="epoch", dpi=40)
    assert set(curves) == {"MAE", "M-MAE"}
    assert_nontrivial(read_png(out))


def test_plot_training_curves_errors(tmp_path, trained_run):
    with pytest.raises(FileNotFoundError, match="trainer_state.json"):
        viz.plot_training_curves({"run": tmp_path}, tmp_path / "c.png")
    partial = tmp_path / "partial.png"
    curves = viz.plot_training_curves({"run": trained_run}, partial, metrics=["magma_loss", "eval_accuracy"], dpi=40)
    assert len(curves["run"]["eval_accuracy"][0]) == 0  # never logged: no panel, one panel drawn
    assert read_png(partial).shape[1] == pixels_of(3.5 * 1.3, 40)
    with pytest.raises(ValueError, match="logged keys"):
        viz.plot_training_curves({"run": trained_run}, tmp_path / "c.png", metrics=["eval_accuracy"])
    with pytest.raises(ValueError, match="x_axis"):
        viz.plot_training_curves({"run": trained_run}, tmp_path / "c.png", x_axis="time")


def test_active_intervals():
    xs = np.array([1, 2, 3, 4, 5, 6, 7])
    assert viz.active_intervals(xs, np.array([0, 1, 1, 0, 0, 1, 1])) == [(2, 3), (6, 7)]
    assert viz.active_intervals(xs, np.zeros(7)) == []


# ------------------------------------------------------------------------------------------------------ packaging


def test_import_stays_light_and_missing_extras_are_named(monkeypatch, tmp_path):
    code = "import sys, hf_magma.visualize; print('matplotlib' in sys.modules, 'pacmap' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={"PYTHONPATH": str(Path(hf_magma.__file__).parents[1]), "PATH": ""})
    assert result.stdout.split() == ["False", "False"]

    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"hf-magma\[viz\]"):
        viz.plot_training_curves({"run": []}, tmp_path / "c.png")
    monkeypatch.setitem(sys.modules, "pacmap", None)
    with pytest.raises(ImportError, match=r"hf-magma\[viz\]"):
        viz.pacmap_embedding(np.zeros((8, 2)))


# ---------------------------------------------------------------------------------------- checkpoints and script


def class_images(num_classes: int = 4, per_class: int = 10, size: int = 32):
    """PIL images whose class sets the colour and place of a bright square on noise."""
    rng = np.random.default_rng(0)
    images, labels = [], []
    for c in range(num_classes):
        for _ in range(per_class):
            pixels = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
            top, left = 2 + 6 * c, 4 + 5 * c
            pixels[top : top + 10, left : left + 10, c % 3] = 230
            images.append(Image.fromarray(pixels))
            labels.append(c)
    return images, labels


@pytest.fixture(scope="module")
def labelled_dataset():
    import datasets

    images, labels = class_images()
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=["red", "green", "blue", "red2"])}
    )
    return datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)


@pytest.fixture(scope="module")
def saved_checkpoints(tmp_path_factory, trained_run):
    """Two saved tiny checkpoints with an image processor; the second with a run's trainer_state.json and a card."""
    from transformers import ViTImageProcessor

    from hf_magma.records.model_card import create_model_card

    root = tmp_path_factory.mktemp("checkpoints")
    paths = []
    for seed, name in ((0, "mae"), (1, "m-mae")):
        model = tiny_model(seed)
        path = root / name
        model.save_pretrained(path)
        processor = ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
        processor.save_pretrained(path)
        paths.append(path)
    (paths[1] / "trainer_state.json").write_text((trained_run / "trainer_state.json").read_text())
    create_model_card(output_dir=paths[1], model_config=tiny_config(), dataset_name="toy", save=True)
    return paths


def test_write_figures_for_two_checkpoints(tmp_path, saved_checkpoints, labelled_dataset):
    mae, m_mae = saved_checkpoints
    written = viz.write_figures(
        {"MAE": mae, "M-MAE": m_mae}, tmp_path, dataset=labelled_dataset, num_classes=3, max_samples_per_class=8,
        linear_accuracy={"MAE": 0.5, "M-MAE": 0.6}, num_images=2, dpi=40,
    )
    assert list(written) == ["pacmap", "keys", "attention", "curves", "reconstructions"]
    for path in written.values():
        assert path.parent == tmp_path
        assert_nontrivial(read_png(path))
    # Two checkpoints x two images rows, image + 3 layers / 4 heads columns.
    assert read_png(written["keys"]).shape[:2] == (pixels_of(1.4 * 4.3, 40), pixels_of(1.4 * 4, 40))
    assert read_png(written["attention"]).shape[:2] == (pixels_of(1.4 * 4.3, 40), pixels_of(1.4 * 5, 40))
    # The PaCMAP panels' Davies-Bouldin indices are saved beside the figure, for tables.
    scores = json.loads((tmp_path / "pacmap.json").read_text())
    assert set(scores) == {"MAE", "M-MAE"} and all(s["davies_bouldin"] > 0 for s in scores.values())
    assert all(0 < s["num_points"] <= 24 for s in scores.values())  # 3 classes x at most 8 images


def test_write_figures_skips_or_refuses_what_the_inputs_do_not_allow(tmp_path, saved_checkpoints, labelled_dataset):
    mae, _ = saved_checkpoints
    # No dataset and no trainer_state.json: nothing can be drawn unless asked, then a clear error.
    assert viz.write_figures({"MAE": mae}, tmp_path) == {}
    with pytest.raises(ValueError, match="'curves' figure: no checkpoint holds a trainer_state.json"):
        viz.write_figures({"MAE": mae}, tmp_path, figures="curves")
    with pytest.raises(ValueError, match="'keys' figure: no dataset"):
        viz.write_figures({"MAE": mae}, tmp_path, figures=["keys"])
    unlabelled = labelled_dataset.remove_columns("label")
    with pytest.raises(ValueError, match="no label column"):
        viz.write_figures({"MAE": mae}, tmp_path, figures="pacmap", dataset=unlabelled)
    with pytest.raises(ValueError, match="Unknown figure"):
        viz.write_figures({"MAE": mae}, tmp_path, figures="pacmap,tsne")
    with pytest.raises(ValueError, match="outside the dataset"):
        viz.write_figures({"MAE": mae}, tmp_path, figures="keys", dataset=labelled_dataset, image_indices=[99])


def test_write_checkpoint_figures_embeds_them_in_the_model_card(saved_checkpoints, labelled_dataset):
    from huggingface_hub import ModelCard

    _, checkpoint = saved_checkpoints
    figures = viz.write_checkpoint_figures(
        checkpoint, labelled_dataset, figures="curves,attention", num_images=1, dpi=40
    )
    assert figures == {
        viz.FIGURES["attention"][1]: "figures/attention_maps.png",
        viz.FIGURES["curves"][1]: "figures/training_curves.png",
    }
    card = ModelCard.load(checkpoint / "README.md")
    for caption, path in figures.items():
        assert (checkpoint / path).is_file()
        assert f"![{caption}]({path})" in card.text


def test_visualize_script_main(tmp_path, saved_checkpoints, load_script):
    script = load_script("scripts/visualize.py")

    images, labels = class_images(num_classes=3, per_class=8)
    for split in ("train", "val"):
        for k, (image, label) in enumerate(zip(images, labels, strict=True)):
            folder = tmp_path / split / f"class{label}"
            folder.mkdir(parents=True, exist_ok=True)
            image.save(folder / f"{k}.png")

    mae, m_mae = saved_checkpoints
    out = tmp_path / "figures"
    script_args, data_args = script.make_parser().parse_args_and_config([
        "--model_name_or_path", str(mae), str(m_mae), "--names", "MAE", "M-MAE", "--output_dir", str(out),
        "--train_dir", str(tmp_path / "train"), "--validation_dir", str(tmp_path / "val"),
        "--figures", "pacmap,keys", "--num_classes", "3", "--num_images", "1", "--dpi", "40",
        "--figure_channels", "2", "1", "0",
    ])
    written = script.main(script_args, data_args)
    assert sorted(written) == ["keys", "pacmap"]
    # The PaCMAP panels' scores come beside the figure.
    assert sorted(p.name for p in out.iterdir()) == ["key_pca.png", "pacmap.json", "pacmap.png"]

    with pytest.raises(ValueError, match="--names has 1 entries for 2"):
        script.make_parser().parse_args_and_config(["--model_name_or_path", "a", "b", "--names", "A"])
    with pytest.raises(ValueError, match=r"--figure_channels must be 1 or 3 channel indices"):
        script.make_parser().parse_args_and_config(["--model_name_or_path", "a", "--figure_channels", "0", "1"])
