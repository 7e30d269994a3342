import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier
from transformers import (
    ViTConfig,
    ViTForImageClassification,
    ViTMAEConfig,
    ViTMAEForPreTraining,
    ViTMAEModel,
    ViTModel,
)

from hf_magma import ViTMAEWithMAGMA
from hf_magma.encoders.features import extract_features
from hf_magma.encoders.forward import encode, run_unmasked
from hf_magma.encoders.loading import load_encoder
from hf_magma.evaluation import knn_accuracy, knn_predict, linear_probe, sample_label_fraction, top1_accuracy
from tests.helpers.tiny import TINY_DECODER, TINY_VIT

TINY = TINY_VIT


def tiny_magma(**overrides) -> ViTMAEWithMAGMA:
    torch.manual_seed(0)
    return ViTMAEWithMAGMA(ViTMAEConfig(**TINY, **TINY_DECODER, mask_ratio=0.75, **overrides)).eval()


def random_split(n_train=300, n_test=120, dim=8, classes=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    train_x = torch.randn(n_train, dim, generator=g, dtype=dtype)
    test_x = torch.randn(n_test, dim, generator=g, dtype=dtype)
    train_y = torch.randint(0, classes, (n_train,), generator=g)
    test_y = torch.randint(0, classes, (n_test,), generator=g)
    return train_x, train_y, test_x, test_y


# ---------------------------------------------------------------------------------------------------- k-NN


@pytest.mark.parametrize("weighting", ["distance", "uniform"])
@pytest.mark.parametrize("k", [1, 10, 25])
def test_knn_matches_scikit_learn(weighting, k):
    train_x, train_y, test_x, _ = random_split()
    sk_weights = (lambda d: 1.0 / (d + 1e-5)) if weighting == "distance" else "uniform"
    sk = KNeighborsClassifier(n_neighbors=k, weights=sk_weights, algorithm="brute", metric="euclidean")
    expected = sk.fit(train_x.numpy(), train_y.numpy()).predict(test_x.numpy())
    # Small chunks on both sides exercise the top-k merging across train chunks.
    got = knn_predict(train_x, train_y, test_x, k=k, weighting=weighting, chunk_size=7, train_chunk_size=29)
    assert torch.equal(got, torch.from_numpy(expected))


def test_knn_chunking_does_not_change_predictions():
    train_x, train_y, test_x, _ = random_split(dtype=torch.float32)
    whole = knn_predict(train_x, train_y, test_x, chunk_size=10_000, train_chunk_size=10_000)
    chunked = knn_predict(train_x, train_y, test_x, chunk_size=13, train_chunk_size=11)
    assert torch.equal(whole, chunked)


def test_knn_accuracy_on_separable_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 16, generator=g) * 10
    train_y, test_y = torch.arange(200) % 4, torch.arange(40) % 4
    train_x = centres[train_y] + torch.randn(200, 16, generator=g)
    test_x = centres[test_y] + torch.randn(40, 16, generator=g)
    assert knn_accuracy(train_x, train_y, test_x, test_y) == 1.0


def test_knn_rejects_bad_input():
    train_x, train_y, test_x, test_y = random_split(n_train=20)
    with pytest.raises(ValueError, match="`k`"):
        knn_accuracy(train_x, train_y, test_x, test_y, k=21)
    with pytest.raises(ValueError, match="weighting"):
        knn_accuracy(train_x, train_y, test_x, test_y, weighting="gaussian")
    with pytest.raises(ValueError, match="integer class ids"):
        knn_accuracy(train_x, train_y.float(), test_x, test_y)
    with pytest.raises(ValueError, match="width"):
        knn_accuracy(train_x, train_y, test_x[:, :3], test_y)
    with pytest.raises(ValueError, match="empty"):
        knn_accuracy(train_x, train_y, test_x[:0], test_y[:0])


# ---------------------------------------------------------------------------------------------- linear probe


def test_linear_probe_separates_separable_data():
    g = torch.Generator().manual_seed(1)
    centres = torch.randn(10, 32, generator=g) * 3
    train_y, test_y = torch.arange(2000) % 10, torch.arange(500) % 10
    train_x = centres[train_y] + torch.randn(2000, 32, generator=g)
    test_x = centres[test_y] + torch.randn(500, 32, generator=g)
    result = linear_probe(train_x, train_y, test_x, test_y, epochs=10, milestones=(6, 8))
    assert result["accuracy"] > 0.97
    assert result["train_accuracy"] > 0.97


def test_linear_probe_is_at_chance_on_shuffled_labels():
    g = torch.Generator().manual_seed(2)
    centres = torch.randn(10, 32, generator=g) * 3
    train_y, test_y = torch.arange(2000) % 10, torch.arange(2000) % 10
    train_x = centres[train_y] + torch.randn(2000, 32, generator=g)
    test_x = centres[test_y] + torch.randn(2000, 32, generator=g)
    shuffled = train_y[torch.randperm(2000, generator=g)]
    result = linear_probe(train_x, shuffled, test_x, test_y, epochs=10, milestones=(6, 8))
    # Chance is 0.1; 2000 test examples put its standard error at 0.007.
    assert 0.06 < result["accuracy"] < 0.14


def test_linear_probe_lr_drops_by_gamma_after_the_milestone_epoch():
    # gamma 0 turns the lr to 0 at the milestone: the head then stays as it was after that many epochs.
    g = torch.Generator().manual_seed(3)
    centres = torch.randn(4, 8, generator=g)
    train_y, test_y = torch.arange(400) % 4, torch.arange(400) % 4
    train_x = centres[train_y] + 2 * torch.randn(400, 8, generator=g)  # overlapping classes: accuracy is sensitive
    test_x = centres[test_y] + 2 * torch.randn(400, 8, generator=g)
    frozen = [linear_probe(train_x, train_y, test_x, test_y, epochs=e, milestones=(2,), gamma=0.0, batch_size=32)
              for e in (3, 4)]
    two_epochs = linear_probe(train_x, train_y, test_x, test_y, epochs=2, milestones=(), batch_size=32)
    going_on = linear_probe(train_x, train_y, test_x, test_y, epochs=4, milestones=(), batch_size=32)
    assert frozen[0]["train_loss"] == pytest.approx(frozen[1]["train_loss"], rel=1e-6)  # no step after epoch 2
    assert frozen[1]["train_loss"] != pytest.approx(going_on["train_loss"], rel=1e-4)
    for result in frozen:  # the weights of two full epochs, not fewer steps
        assert (result["train_accuracy"] == two_epochs["train_accuracy"]
                and result["accuracy"] == two_epochs["accuracy"])


def test_linear_probe_is_seeded():
    train_x, train_y, test_x, test_y = random_split(dtype=torch.float32)
    a = linear_probe(train_x, train_y, test_x, test_y, epochs=3, milestones=(2,), seed=5)
    b = linear_probe(train_x, train_y, test_x, test_y, epochs=3, milestones=(2,), seed=5)
    c = linear_probe(train_x, train_y, test_x, test_y, epochs=3, milestones=(2,), seed=6)
    assert a == b
    assert a["train_loss"] != c["train_loss"]


def test_linear_probe_standardize_handles_badly_scaled_features():
    g = torch.Generator().manual_seed(3)
    centres = torch.randn(3, 8, generator=g)
    train_y, test_y = torch.arange(300) % 3, torch.arange(90) % 3
    train_x = (centres[train_y] + 0.1 * torch.randn(300, 8, generator=g)) * 1e4 + 5e4
    test_x = (centres[test_y] + 0.1 * torch.randn(90, 8, generator=g)) * 1e4 + 5e4
    raw = linear_probe(train_x, train_y, test_x, test_y, epochs=5, milestones=())
    scaled = linear_probe(train_x, train_y, test_x, test_y, epochs=5, milestones=(), standardize=True)
    assert raw["accuracy"] < 0.5  # lr 0.1 on raw features of scale 1e4 overshoots
    assert scaled["accuracy"] > 0.95
    with pytest.raises(ValueError, match="diverged"):
        linear_probe(train_x * 1e30, train_y, test_x, test_y, epochs=2, milestones=())


def test_linear_probe_rejects_bad_input():
    train_x, train_y, test_x, test_y = random_split(dtype=torch.float32)
    with pytest.raises(ValueError, match="epochs"):
        linear_probe(train_x, train_y, test_x, test_y, epochs=0)
    with pytest.raises(ValueError, match="NaN"):
        linear_probe(train_x * float("nan"), train_y, test_x, test_y, epochs=1)
    with pytest.raises(ValueError, match="labels for"):
        linear_probe(train_x, train_y[:-1], test_x, test_y, epochs=1)


def test_top1_accuracy():
    assert top1_accuracy(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 1, 2])) == 0.75


# ------------------------------------------------------------------------------------------- label fractions


def test_label_fraction_is_exact_per_class_and_reproducible():
    labels = torch.arange(1000) % 10
    labels = labels[torch.randperm(1000, generator=torch.Generator().manual_seed(0))]
    for fraction, per_class in ((0.01, 1), (0.05, 5), (0.1, 10)):
        picked = sample_label_fraction(labels, fraction, seed=3)
        assert torch.equal(torch.bincount(labels[picked], minlength=10), torch.full((10,), per_class))
        assert torch.equal(picked, sample_label_fraction(labels, fraction, seed=3))
        assert picked.unique().numel() == picked.numel()
    assert not torch.equal(sample_label_fraction(labels, 0.1, seed=3), sample_label_fraction(labels, 0.1, seed=4))
    assert torch.equal(sample_label_fraction(labels, 1.0, seed=3), torch.arange(1000))


def test_smaller_fractions_are_subsets_of_larger_ones():
    labels = torch.arange(2000) % 20
    small = set(sample_label_fraction(labels, 0.05, seed=0).tolist())
    large = set(sample_label_fraction(labels, 0.1, seed=0).tolist())
    assert small < large


def test_label_fraction_rejects_bad_input():
    with pytest.raises(ValueError, match="fraction"):
        sample_label_fraction(torch.arange(10), 0.0)
    with pytest.raises(ValueError, match="class 1 has 1 examples"):
        sample_label_fraction(torch.tensor([0] * 50 + [1]), 0.5)
    with pytest.raises(ValueError, match="integer"):
        sample_label_fraction(torch.rand(10), 0.5)


# ------------------------------------------------------------------------------------------ encoders, features


def test_load_encoder_from_model_objects():
    model = tiny_magma()
    assert load_encoder(model) is model.vit
    assert isinstance(load_encoder(model.vit), ViTMAEModel)
    clf = ViTForImageClassification(ViTConfig(**TINY, num_labels=3))
    assert load_encoder(clf) is clf.vit
    with pytest.raises(ValueError, match="not a ViT"):
        load_encoder(torch.nn.Linear(2, 2))


def test_encode_keeps_every_token_in_order(tmp_path):
    model = tiny_magma()
    encoder = model.vit
    pixel_values = torch.randn(3, 3, 16, 16)
    with torch.inference_mode():
        features = encode(encoder, pixel_values, "mean")
        # The same encoder run by hand with no masking and no shuffling.
        emb = encoder.embeddings
        x = emb.patch_embeddings(pixel_values) + emb.position_embeddings[:, 1:]
        cls = (emb.cls_token + emb.position_embeddings[:, :1]).expand(3, -1, -1)
        h = torch.cat([cls, x], dim=1)
        for layer in encoder.layers:
            h = layer(h)
        h = encoder.layernorm(h)
    torch.testing.assert_close(features, h[:, 1:].mean(1))
    torch.testing.assert_close(encode(encoder, pixel_values, "cls"), h[:, 0])
    assert encoder.config.mask_ratio == 0.75  # restored after use: the model may still be training


def test_vit_mae_and_vit_with_the_same_weights_give_the_same_features():
    mae = tiny_magma().vit
    vit = ViTModel(ViTConfig(**TINY), add_pooling_layer=False).eval()
    missing, unexpected = vit.load_state_dict(mae.state_dict(), strict=False)
    assert not missing and not unexpected
    pixel_values = torch.randn(2, 3, 16, 16)
    with torch.inference_mode():
        torch.testing.assert_close(encode(mae, pixel_values, "cls"), encode(vit, pixel_values, "cls"))
        torch.testing.assert_close(encode(mae, pixel_values, "mean"), encode(vit, pixel_values, "mean"))


def test_features_do_not_depend_on_batch_size():
    model = tiny_magma()
    images = torch.randn(23, 3, 16, 16)
    labels = torch.arange(23) % 4
    dataset = torch.utils.data.TensorDataset(images, labels)
    reference, ref_labels = extract_features(model, dataset, batch_size=23, show_progress=False)
    for batch_size in (1, 4, 10):
        features, got_labels = extract_features(model, dataset, batch_size=batch_size, show_progress=False)
        assert torch.equal(features, reference)
        assert torch.equal(got_labels, ref_labels)
    assert reference.shape == (23, 32)
    assert model.training is False


def test_extract_features_from_batches_of_dicts_and_without_labels():
    model = tiny_magma()
    images = torch.randn(6, 3, 16, 16)
    batches = [{"pixel_values": images[:4]}, {"pixel_values": images[4:]}]
    features, labels = extract_features(model, batches, pooling="mean", show_progress=False)
    assert labels is None
    assert torch.equal(features, extract_features(model, [(images,)], pooling="mean", show_progress=False)[0])
    with pytest.raises(ValueError, match="pooling"):
        extract_features(model, batches, pooling="max", show_progress=False)
    with pytest.raises(ValueError, match="empty"):
        extract_features(model, [], show_progress=False)


@pytest.mark.parametrize("kind", ["magma", "mae", "vit", "vit_classifier"])
def test_load_encoder_from_checkpoints(tmp_path, kind):
    if kind == "magma":
        model = tiny_magma()
    elif kind == "mae":
        torch.manual_seed(0)
        model = ViTMAEForPreTraining(ViTMAEConfig(**TINY, **TINY_DECODER))
    elif kind == "vit":
        model = ViTModel(ViTConfig(**TINY))
    else:
        model = ViTForImageClassification(ViTConfig(**TINY, num_labels=3))
    model.save_pretrained(tmp_path)
    encoder = load_encoder(str(tmp_path))
    assert isinstance(encoder, ViTMAEModel if kind in ("magma", "mae") else ViTModel)
    expected = load_encoder(model)
    for name, tensor in encoder.state_dict().items():
        assert torch.equal(tensor, expected.state_dict()[name]), name
    if kind in ("magma", "mae"):
        assert encoder.config.mask_ratio == 0.0


def test_load_encoder_rejects_a_checkpoint_that_is_not_a_vit(tmp_path):
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                         vocab_size=50)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="`bert` checkpoint, not a ViT"):
        load_encoder(str(tmp_path))


def test_run_unmasked_returns_every_token_in_order_and_passes_options():
    encoder = tiny_magma().vit
    pixel_values = torch.randn(2, 3, 16, 16)
    with torch.inference_mode():
        outputs = run_unmasked(encoder, pixel_values, output_hidden_states=True)
    num_patches = encoder.embeddings.patch_embeddings.num_patches
    assert outputs.last_hidden_state.shape[1] == 1 + num_patches
    assert torch.equal(outputs.ids_restore, torch.arange(num_patches).expand(2, -1))
    assert len(outputs.hidden_states) == len(encoder.layers) + 1
    assert encoder.config.mask_ratio == 0.75
    with pytest.raises(ValueError, match="batch, channels, height, width"):
        run_unmasked(encoder, torch.randn(3, 16, 16))


def test_a_label_fraction_lifted_by_the_one_per_class_floor_is_recorded_and_logged(caplog):
    from hf_magma.evaluation import EvaluationArguments, evaluate_features

    g = torch.Generator().manual_seed(0)
    train_x, test_x = torch.randn(120, 4, generator=g), torch.randn(20, 4, generator=g)
    train_y, test_y = torch.arange(120) % 10, torch.arange(20) % 10
    args = EvaluationArguments(model_name_or_path="unused", knn_k=0, linear_epochs=1,
                               label_fractions=[0.001, 0.5, 1.0])
    subsets = {}
    results = evaluate_features(train_x, train_y, test_x, test_y, args, label_subsets=subsets, show_progress=False)
    assert set(results) == {"linear_accuracy_0.1pct", "linear_accuracy_50pct", "linear_accuracy"}
    assert subsets["linear_accuracy_0.1pct"] == {"requested_fraction": 0.001, "num_labelled": 10, "fraction": 10 / 120}
    assert subsets["linear_accuracy_50pct"]["num_labelled"] == 60 and subsets["linear_accuracy"]["num_labelled"] == 120
    assert "--label_fractions 0.001: 10 of the 120 training labels (8.33 %), not 0.1 %" in caplog.text
    assert "--label_fractions 0.5" not in caplog.text


def test_unreadable_images_are_skipped_and_named_with_their_labels(caplog):
    import io

    import datasets
    import numpy as np
    import PIL.Image

    def png(value):
        buffer = io.BytesIO()
        PIL.Image.fromarray(np.full((16, 16, 3), value, dtype=np.uint8)).save(buffer, format="PNG")
        return buffer.getvalue()

    good = png(10)
    rows = [
        {"image": {"bytes": good, "path": "a.png"}, "label": 0},
        {"image": {"bytes": png(200)[:60], "path": "truncated.png"}, "label": 1},
        {"image": {"bytes": b"not an image", "path": "corrupt.png"}, "label": 2},
        {"image": {"bytes": good, "path": "b.png"}, "label": 3},
    ]
    features = datasets.Features({"image": datasets.Image(decode=False), "label": datasets.Value("int64")})
    data = datasets.Dataset.from_list(rows, features=features)
    x, y = extract_features(ViTMAEModel(ViTMAEConfig(**TINY, mask_ratio=0.0)), data, batch_size=3, show_progress=False)
    assert x.shape[0] == 2 and y.tolist() == [0, 3]
    assert "truncated.png" in caplog.text and "corrupt.png" in caplog.text


def test_a_local_checkpoint_path_that_does_not_exist_is_named(tmp_path):
    for path in (str(tmp_path / "run" / "checkpoint-9"), "./outputs/m-mae", "~/no/such/run"):
        with pytest.raises(FileNotFoundError, match=r"--model_name_or_path .*: no such folder.*Hub model id"):
            load_encoder(path)


def test_a_relative_path_that_reads_as_a_hub_id_is_named_when_neither_exists(hub_server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # "outputs/m-mae" exists neither here nor on the (localhost) Hub
    with pytest.raises(OSError, match=r"(?s)--model_name_or_path outputs/m-mae: "
                                      r"no local folder of that name.*org/name"):
        load_encoder("outputs/m-mae")


def test_a_damaged_weights_file_is_named(tmp_path):
    from hf_magma.models.arguments import MAGMAModelArguments, load_model_and_image_processor

    ViTMAEWithMAGMA(ViTMAEConfig(**TINY, **TINY_DECODER)).save_pretrained(tmp_path / "run")
    weights = tmp_path / "run" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # a copy cut short
    with pytest.raises(ValueError, match=r"Cannot read the weights of .*run "
                                         r"\(SafetensorError.*damaged.*another checkpoint"):
        load_encoder(str(tmp_path / "run"))
    with pytest.raises(ValueError, match=r"weights of --model_name_or_path .*run \(SafetensorError"):
        load_model_and_image_processor(MAGMAModelArguments(model_name_or_path=str(tmp_path / "run")))


def test_test_classes_absent_from_training_are_warned_about(caplog):
    from hf_magma.evaluation import EvaluationArguments, evaluate_features

    g = torch.Generator().manual_seed(0)
    train_x, test_x = torch.randn(30, 4, generator=g), torch.randn(10, 4, generator=g)
    train_y, test_y = torch.arange(30) % 2, torch.tensor([0, 1, 2, 2, 0, 1, 0, 1, 0, 1])
    args = EvaluationArguments(model_name_or_path="unused", knn_k=3, linear_epochs=0)
    evaluate_features(train_x, train_y, test_x, test_y, args, show_progress=False)
    assert "The test split has 2 images of classes [2] that the training split lacks" in caplog.text
    assert "at most 80.00 %" in caplog.text
