"""The documented defaults of the evaluation protocol, the augmentation and the MAGMA schedule (MAGMA.md,
README), pinned: each would change a reported number without failing any other test."""

import dataclasses
import inspect

import pytest
import torch

from hf_magma.cli.reproduce import ReproduceArguments
from hf_magma.data.arguments import ImageDataArguments
from hf_magma.data.crop import BatchImageTransform
from hf_magma.data.in_memory import SIMCLR_CROP_SCALE
from hf_magma.data.transforms import ImageTransform
from hf_magma.data.two_views import TwoViewAugmentation
from hf_magma.evaluation import EvaluationArguments, knn_accuracy, knn_predict, linear_probe
from hf_magma.training.training_args import MAGMATrainingArguments


def defaults_of(function):
    return {name: p.default for name, p in inspect.signature(function).parameters.items()
            if p.default is not inspect.Parameter.empty}


def field_defaults(cls):
    return {f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            for f in dataclasses.fields(cls)}


def test_knn_defaults_are_k_10_with_distance_weighted_votes():
    for function in (knn_predict, knn_accuracy):
        assert defaults_of(function)["k"] == 10 and defaults_of(function)["weighting"] == "distance"
    settings = field_defaults(EvaluationArguments)
    assert settings["knn_k"] == 10 and settings["knn_weighting"] == "distance"


def test_a_vote_weighs_one_over_distance_plus_1e_5():
    test_x = torch.zeros(1, 1, dtype=torch.float64)
    # One neighbour of class 0 at distance 1e-6, nine of class 1 at 5e-5: with 1 / (d + 1e-5) class 1 wins
    # (90909 < 9 x 16667); with 1 / d, or a smaller offset, class 0 would (1e6 > 9 x 20000).
    train_x = torch.tensor([[1e-6]] + [[5e-5]] * 9, dtype=torch.float64)
    train_y = torch.tensor([0] + [1] * 9)
    assert knn_predict(train_x, train_y, test_x).tolist() == [1]
    # One at distance 0, nine at 1e-4: class 0 wins (1e5 > 9 / 1.1e-4 = 81818); with a larger offset (1e-4:
    # 1e4 < 45000) or uniform votes, class 1 would.
    train_x = torch.tensor([[0.0]] + [[1e-4]] * 9, dtype=torch.float64)
    assert knn_predict(train_x, train_y, test_x).tolist() == [0]


def test_linear_probe_defaults_are_the_papers_recipe():
    expected = {"epochs": 100, "lr": 0.1, "momentum": 0.9, "batch_size": 256, "milestones": (60, 80), "gamma": 0.1,
                "weight_decay": 0.0, "standardize": False}
    assert {k: defaults_of(linear_probe)[k] for k in expected} == expected
    settings = field_defaults(EvaluationArguments)
    assert (settings["linear_epochs"], settings["linear_lr"], settings["linear_momentum"],
            settings["linear_batch_size"], settings["linear_milestones"], settings["linear_gamma"]) == (
        100, 0.1, 0.9, 256, [60, 80], 0.1)
    assert settings["label_fractions"] == [1.0] and settings["pooling"] == "cls"


def test_the_reproduction_grid_evaluates_with_the_papers_protocol():
    settings = field_defaults(ReproduceArguments)
    assert (settings["knn_k"], settings["linear_epochs"], settings["pooling"]) == (10, 100, "cls")
    assert settings["label_fractions"] == [1.0]


def test_mae_random_resized_crop_defaults():
    for transform in (ImageTransform, BatchImageTransform):  # per image (DataLoader workers) and per batch (device)
        defaults = defaults_of(transform)
        assert tuple(defaults["scale"]) == (0.2, 1.0)
        assert tuple(defaults["ratio"]) == pytest.approx((3 / 4, 4 / 3))
        assert defaults["hflip"] == 0.5 and defaults["random_crop"] is True
    # What the scripts' --crop_scale / --crop_ratio / --horizontal_flip give when left out.
    assert ImageDataArguments().augmentation_settings() == {
        "scale": (0.2, 1.0), "ratio": pytest.approx((3 / 4, 4 / 3)), "hflip": 0.5, "random_crop": True}


def test_simclr_random_resized_crop_defaults():
    defaults = defaults_of(TwoViewAugmentation)
    assert tuple(defaults["scale"]) == (0.08, 1.0) and SIMCLR_CROP_SCALE == (0.08, 1.0)
    assert tuple(defaults["ratio"]) == pytest.approx((3 / 4, 4 / 3))
    assert defaults["hflip"] == 0.5


def test_magma_schedule_defaults(tmp_path):
    settings = field_defaults(MAGMATrainingArguments)
    # e_st is given as text (a number or `auto`), read as a number
    assert MAGMATrainingArguments(output_dir=str(tmp_path), use_cpu=True).magma_start_epoch == 10
    assert settings["magma_epochs"] == 100  # e_dur
    assert settings["magma_weight"] == 1.0 and settings["uniformity_weight"] == 0.0
    assert settings["magma_start_step"] is None and settings["magma_steps"] is None
