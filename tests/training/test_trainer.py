"""Tests for hf_magma.training.trainer: arguments, the schedule, logged terms, evaluation and the online probe."""

import logging
import math
import os

import datasets
import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import ViTMAEConfig

from hf_magma.data.transforms import ImageCollator, ImageTransform
from hf_magma.models.mae import ViTMAEWithMAGMA
from hf_magma.records.trainer_state import last_checkpoint
from hf_magma.training.trainer import MAGMATrainer
from hf_magma.training.training_args import MAGMATrainingArguments
from hf_magma.utils.distributed import all_gather_with_grad
from tests.helpers import ROOT
from tests.helpers.tiny import TINY_DECODER, TINY_VIT

TINY = {**TINY_VIT, **TINY_DECODER, "num_hidden_layers": 3}


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return ViTMAEWithMAGMA(ViTMAEConfig(**TINY))


def labelled_dataset(n=48, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 16, 16), dtype=np.uint8)
    features = datasets.Features({"image": datasets.Array2D((16, 16), "uint8"),
                                  "label": datasets.ClassLabel(num_classes=3)})
    ds = datasets.Dataset.from_dict({"image": images, "label": rng.integers(0, 3, n)}, features=features)
    return ds.with_format("numpy", columns=["image"], output_all_columns=True, dtype=np.uint8)


def make_args(tmp_path, **overrides):
    values = dict(output_dir=str(tmp_path), per_device_train_batch_size=8, report_to="none", use_cpu=True,
                  disable_tqdm=True, save_strategy="no", logging_steps=2, seed=0)
    values.update(overrides)
    return MAGMATrainingArguments(**values)


def collator(train=True):
    return ImageCollator(ImageTransform(16, mean=[0.5], std=[0.5], train=train), "image", "label")


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("magma_weight", -1.0, "magma_weight"),
        ("magma_weight", float("nan"), "magma_weight"),
        ("uniformity_weight", float("inf"), "uniformity_weight"),
        ("magma_start_epoch", -2, "magma_start_epoch"),
        ("magma_steps", 5, "given together"),
        ("base_learning_rate", 0.0, "base_learning_rate"),
        ("online_probe_learning_rate", -1.0, "online_probe_learning_rate"),
        ("hub_model_id", "../../etc/x", r"--hub_model_id '\.\./\.\./etc/x' is not a Hub repository id"),
        ("hub_model_id", "a/b/c", r"--hub_model_id 'a/b/c' is not a Hub repository id: give `name` or"),
        ("output_dir", "", r"--output_dir is empty: give the folder"),
        ("output_dir", "  ", r"--output_dir is empty"),
    ],
)
def test_invalid_arguments(tmp_path, field, value, message):
    with pytest.raises(ValueError, match=message):
        make_args(tmp_path, **{field: value})


def test_base_learning_rate_scaling(tmp_path):
    args = make_args(tmp_path, base_learning_rate=1.5e-4, per_device_train_batch_size=64,
                     gradient_accumulation_steps=2)
    assert math.isclose(args.learning_rate, 1.5e-4 * 128 / 256)


def test_trainer_rejects_bad_inputs(tmp_path):
    with pytest.raises(TypeError, match="ViTMAEWithMAGMA"):
        MAGMATrainer(model=torch.nn.Linear(2, 2), args=make_args(tmp_path))
    with pytest.raises(ValueError, match="remove_unused_columns"):
        MAGMATrainer(model=tiny_model(), args=make_args(tmp_path, remove_unused_columns=True))
    with pytest.raises(ValueError, match="num_labels"):
        MAGMATrainer(model=tiny_model(), args=make_args(tmp_path), num_labels=1)


def test_schedule_from_global_step(tmp_path):
    args = make_args(tmp_path, magma_weight=0.5, magma_start_epoch=2, magma_epochs=1.5)
    trainer = MAGMATrainer(model=tiny_model(), args=args, train_dataset=labelled_dataset(), data_collator=collator())
    trainer.get_train_dataloader()
    assert trainer.steps_per_epoch == 6  # 48 images / batch 8
    weights = [trainer.magma_weight_at(step) for step in range(25)]
    assert weights == [0.0] * 12 + [0.5] * 9 + [0.0] * 4  # epochs [2, 3.5) = steps [12, 21)

    stepped = MAGMATrainer(model=tiny_model(), args=make_args(tmp_path, magma_start_step=3, magma_steps=2),
                           train_dataset=labelled_dataset(), data_collator=collator())
    assert [stepped.magma_weight_at(s) for s in range(6)] == [0, 0, 0, 1, 1, 0]


def test_streaming_schedule_needs_steps(tmp_path):
    args = make_args(tmp_path, max_steps=3)
    with pytest.raises(ValueError, match="magma_start_step"):
        args.magma_window(None)


def test_evaluate_before_training_uses_the_schedule(tmp_path):
    args = make_args(tmp_path, magma_start_epoch=0, magma_epochs=1, magma_weight=0.3)
    trainer = MAGMATrainer(model=tiny_model(), args=args, train_dataset=labelled_dataset(),
                           eval_dataset=labelled_dataset(8, 1), data_collator=collator(), num_labels=3)
    metrics = trainer.evaluate()
    assert metrics["eval_magma_weight"] == 0.3 and trainer.steps_per_epoch == 6


def test_warns_loudly_when_term_never_turns_on(tmp_path, caplog):
    args = make_args(tmp_path, max_steps=4, magma_start_epoch=10)
    trainer = MAGMATrainer(model=tiny_model(), args=args, train_dataset=labelled_dataset(), data_collator=collator())
    with caplog.at_level(logging.WARNING, logger="hf_magma.training.trainer"):
        trainer.get_train_dataloader()
    assert "NEVER TURNS ON" in caplog.text


def test_training_logs_terms_and_evaluation(tmp_path):
    args = make_args(tmp_path, max_steps=6, magma_start_step=2, magma_steps=2, logging_steps=2,
                     uniformity_weight=0.01, learning_rate=1e-3)
    model = tiny_model()
    trainer = MAGMATrainer(model=model, args=args, train_dataset=labelled_dataset(),
                           eval_dataset=labelled_dataset(16, 1), data_collator=collator(),
                           eval_data_collator=collator(False), num_labels=3)
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert [entry["step"] for entry in logs] == [2, 4, 6]
    assert [entry["magma_weight"] for entry in logs] == [0.0, 1.0, 0.0]
    for entry in logs:
        for key in ("reconstruction_loss", "magma_loss", "uniformity_loss", "online_accuracy"):
            assert math.isfinite(entry[key]), key
        assert entry["magma_loss"] > 0  # computed and logged while its weight is 0 too
        expected = (entry["reconstruction_loss"] + entry["magma_weight"] * entry["magma_loss"]
                    + 0.01 * entry["uniformity_loss"])
        assert math.isclose(entry["loss"], expected, rel_tol=1e-4)
    assert model.config.uniformity_weight == 0.01

    metrics = trainer.evaluate()
    for key in ("eval_loss", "eval_reconstruction_loss", "eval_magma_loss", "eval_uniformity_loss",
                "eval_online_accuracy"):
        assert key in metrics and math.isfinite(metrics[key]), key
    assert metrics["eval_magma_weight"] == 0.0  # step 6 is after the window
    assert math.isclose(metrics["eval_loss"],
                        metrics["eval_reconstruction_loss"] + 0.01 * metrics["eval_uniformity_loss"], rel_tol=1e-4)


def _encoder_gradients(tmp_path, num_labels):
    model = tiny_model()
    trainer = MAGMATrainer(model=model, args=make_args(tmp_path, magma_start_step=0, magma_steps=10),
                           train_dataset=labelled_dataset(), data_collator=collator(), num_labels=num_labels)
    batch = collator(train=False)([labelled_dataset()[i] for i in range(8)])
    model.train()
    torch.manual_seed(123)
    loss = trainer.compute_loss(model, batch)
    loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}, trainer


def test_online_probe_leaves_encoder_gradients_unchanged(tmp_path):
    without, _ = _encoder_gradients(tmp_path, None)
    with_probe, trainer = _encoder_gradients(tmp_path, 3)
    assert trainer.online_probe is not None
    assert trainer.online_probe.classifier.weight.abs().sum() > 0  # the probe did take a step
    assert without.keys() == with_probe.keys() and len(without) > 0
    for name in without:
        assert torch.equal(without[name], with_probe[name]), name


def test_the_online_probe_changes_nothing_the_run_trains(tmp_path):
    """Over several steps (the probe's weights are no longer zero after the first), with the probe's features fed
    back and its construction in the run: the model's weights are bit-identical with and without the probe, and
    the global RNG is where it would be without it."""
    def train(num_labels, folder):
        torch.manual_seed(7)
        trainer = MAGMATrainer(model=tiny_model(), args=make_args(tmp_path / folder, max_steps=4, magma_start_step=0,
                                                                  magma_steps=4, seed=7),
                               train_dataset=labelled_dataset(), data_collator=collator(), num_labels=num_labels)
        after_building = torch.rand(1)
        trainer.train()
        return trainer, after_building, {k: v.clone() for k, v in trainer.model.state_dict().items()}

    without, rng_without, weights_without = train(None, "without")
    with_probe, rng_with, weights_with = train(3, "with")
    assert without.online_probe is None and with_probe.online_probe is not None
    assert with_probe.online_probe.classifier.weight.abs().sum() > 0
    assert torch.equal(rng_without, rng_with)
    assert weights_without.keys() == weights_with.keys()
    for name, tensor in weights_without.items():
        assert torch.equal(tensor, weights_with[name]), name


def test_online_probe_not_in_saved_weights(tmp_path):
    args = make_args(tmp_path, max_steps=2, save_strategy="steps", save_steps=2)
    trainer = MAGMATrainer(model=tiny_model(), args=args, train_dataset=labelled_dataset(), data_collator=collator(),
                           num_labels=3)
    trainer.train()
    checkpoint = last_checkpoint(tmp_path)
    assert checkpoint is not None and checkpoint.endswith("checkpoint-2")
    keys = load_file(f"{checkpoint}/model.safetensors").keys()
    assert not any("classifier" in key or "probe" in key for key in keys)
    assert len(keys) == len(tiny_model().state_dict())  # saved under transformers' checkpoint key names
    assert (tmp_path / "checkpoint-2" / "online_probe.pt").is_file()  # the probe's own state, beside the weights


def test_fsdp_needs_the_full_state_dict_so_that_checkpoints_hold_weights():
    from torch.distributed.fsdp import StateDictType

    from hf_magma.training.trainer import check_fsdp_state_dict_type

    check_fsdp_state_dict_type(StateDictType.FULL_STATE_DICT)
    check_fsdp_state_dict_type("FULL_STATE_DICT")
    for sharded in (StateDictType.SHARDED_STATE_DICT, "SHARDED_STATE_DICT", StateDictType.LOCAL_STATE_DICT):
        with pytest.raises(ValueError, match="fsdp_state_dict_type: FULL_STATE_DICT"):
            check_fsdp_state_dict_type(sharded)


def test_the_fsdp_config_asks_for_what_the_trainer_accepts():

    import yaml

    from hf_magma.training.trainer import check_fsdp_state_dict_type

    config = yaml.safe_load((ROOT / "scripts" / "accelerate_configs" / "fsdp.yaml")
                            .read_text())
    assert config["distributed_type"] == "FSDP"
    assert config["fsdp_config"]["fsdp_transformer_layer_cls_to_wrap"] == "ViTMAELayer"
    check_fsdp_state_dict_type(config["fsdp_config"]["fsdp_state_dict_type"])


def test_all_gather_single_process_is_identity():
    x = torch.randn(4, 3, requires_grad=True)
    assert all_gather_with_grad(x) is x


@pytest.mark.parametrize("sharding", ["ddp", "fsdp"])
def test_magma_gather_matches_the_global_batch(sharding):
    """Two processes with half a batch each: the gathered terms and the reduced gradients equal one process's, with
    DDP's averaging and with the model sharded by torch's FSDP2 as the FSDP accelerate config asks."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = ROOT
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root)]), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "tests.helpers.distributed_gather_worker",
         sharding],
        env=env, capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stdout.count("gradients: ok") == 2


@pytest.mark.parametrize("objective", ["simclr", "vicreg"])
def test_trains_vit_for_ssl_on_two_views_and_logs_its_terms(tmp_path, objective):
    from transformers import ViTConfig

    from hf_magma import ViTForSSL
    from hf_magma.data.two_views import TwoViewAugmentation, TwoViewCollator

    torch.manual_seed(0)
    config = ViTConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64, image_size=16,
                       patch_size=4, ssl_objective=objective, projector_hidden_size=32, projector_output_size=16)
    model = ViTForSSL(config)
    augmentation = TwoViewAugmentation(16, mean=[0.5] * 3, std=[0.5] * 3, seed=0)
    args = make_args(tmp_path, max_steps=4, magma_start_step=2, magma_steps=10, learning_rate=1e-3)
    trainer = MAGMATrainer(model=model, args=args, train_dataset=labelled_dataset(),
                           eval_dataset=labelled_dataset(16, 1),
                           data_collator=TwoViewCollator(collator(False), augmentation),
                           eval_data_collator=TwoViewCollator(collator(False), augmentation), num_labels=3)
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert [entry["magma_weight"] for entry in logs] == [0.0, 1.0]
    parts = ("invariance_loss", "variance_loss", "covariance_loss") if objective == "vicreg" else ()
    for entry in logs:
        for key in ("objective_loss", "magma_loss", "online_accuracy", *parts):
            assert math.isfinite(entry[key]), key
        assert "reconstruction_loss" not in entry and "uniformity_loss" not in entry
        assert math.isclose(entry["loss"], entry["objective_loss"] + entry["magma_weight"] * entry["magma_loss"],
                            rel_tol=1e-4)
    metrics = trainer.evaluate()
    assert math.isfinite(metrics["eval_objective_loss"]) and math.isfinite(metrics["eval_online_accuracy"])
    with pytest.raises(ValueError, match="uniformity_weight"):
        MAGMATrainer(model=model, args=make_args(tmp_path, uniformity_weight=0.01), train_dataset=labelled_dataset(),
                     data_collator=TwoViewCollator(collator(False), augmentation))


def test_loading_the_best_model_restores_that_checkpoints_weights(tmp_path):
    # ViT-MAE checkpoints use legacy key names; the Trainer's own non-strict load would keep the current weights.
    args = make_args(tmp_path, max_steps=6, save_strategy="steps", save_steps=2, learning_rate=5e-2)
    trainer = MAGMATrainer(model=tiny_model(), args=args, train_dataset=labelled_dataset(), data_collator=collator())
    trainer.train()
    trainer.state.best_model_checkpoint = str(tmp_path / "checkpoint-2")
    expected = ViTMAEWithMAGMA.from_pretrained(tmp_path / "checkpoint-2").state_dict()
    assert any(not torch.equal(v, expected[k]) for k, v in trainer.model.state_dict().items())
    trainer._load_best_model()
    for name, value in trainer.model.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=0, msg=name)


def test_a_batch_with_no_readable_image_is_a_zero_step_that_still_runs_the_model(tmp_path):
    trainer = MAGMATrainer(model=tiny_model(), args=make_args(tmp_path, max_steps=1), train_dataset=labelled_dataset(),
                           data_collator=collator())
    calls = []
    handle = trainer.model.register_forward_hook(lambda *_: calls.append(1))
    loss = trainer.compute_loss(trainer.model, {"pixel_values": torch.zeros(0, 3, 16, 16)})
    handle.remove()
    assert calls and loss.item() == 0.0
    loss.backward()
    assert all(p.grad is None or not p.grad.any() for p in trainer.model.parameters())
    assert trainer._sums["train"] == {}


def test_evaluation_without_training_data_names_the_epoch_schedule(tmp_path):
    trainer = MAGMATrainer(model=tiny_model(), args=make_args(tmp_path), eval_dataset=labelled_dataset(8),
                           data_collator=collator(False))
    with pytest.raises(ValueError, match="no training data"):
        trainer.evaluate()
    stepwise = MAGMATrainer(model=tiny_model(), args=make_args(tmp_path, magma_start_step=0, magma_steps=5),
                            eval_dataset=labelled_dataset(8), data_collator=collator(False))
    assert "eval_magma_loss" in stepwise.evaluate()


def test_last_checkpoint_skips_folders_a_kill_left_incomplete(tmp_path):
    for step, state in ((2, '{"global_step": 2}'), (4, '{"global_st'), (6, None)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if state is not None:
            (folder / "trainer_state.json").write_text(state)
    (tmp_path / "checkpoint-x").mkdir()
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    assert last_checkpoint(tmp_path / "missing") is None


def test_the_probe_state_is_written_before_the_trainer_state(tmp_path, monkeypatch):
    # A checkpoint counts as complete once `trainer_state.json` exists, so nothing may be written after it. File
    # times cannot tell two quick writes apart: the folder is listed at the moment the state is written.
    from transformers.trainer_callback import TrainerState

    listed = {}
    save_to_json = TrainerState.save_to_json

    def record(self, json_path):
        folder = os.path.dirname(json_path)
        listed[os.path.basename(folder)] = sorted(os.listdir(folder))
        return save_to_json(self, json_path)

    monkeypatch.setattr(TrainerState, "save_to_json", record)
    args = make_args(tmp_path, max_steps=2, save_strategy="steps", save_steps=2)
    trainer = MAGMATrainer(model=tiny_model(), args=args, train_dataset=labelled_dataset(), data_collator=collator(),
                           num_labels=3)
    trainer.train()
    assert "online_probe.pt" in listed["checkpoint-2"] and "hf_magma_run.json" in listed["checkpoint-2"]
    assert "model.safetensors" in listed["checkpoint-2"]  # the recording itself works
    assert (tmp_path / "checkpoint-2" / "online_probe.pt").is_file()

# ---- messages that name the setting and the fix ----------------------------------------------------------------


def test_a_batch_too_small_for_the_magma_term_is_announced_at_the_start(tmp_path, caplog):
    args = make_args(tmp_path, per_device_train_batch_size=2, max_steps=1, magma_start_step=0, magma_steps=1)
    trainer = MAGMATrainer(model=tiny_model(), args=args, train_dataset=labelled_dataset(n=8),
                           data_collator=collator())
    trainer.train()
    assert "The MAGMA term is built on batches of 2 (--per_device_train_batch_size 2)" in caplog.text
    assert "Use a batch of at least 3" in caplog.text
    caplog.clear()
    args = make_args(tmp_path / "b", per_device_train_batch_size=3, max_steps=1, magma_start_step=0, magma_steps=1)
    MAGMATrainer(model=tiny_model(), args=args, train_dataset=labelled_dataset(n=8), data_collator=collator()).train()
    assert "The MAGMA term is built on batches" not in caplog.text


def test_drop_last_with_a_batch_larger_than_the_data_is_an_error(tmp_path):
    args = make_args(tmp_path, per_device_train_batch_size=16, dataloader_drop_last=True, num_train_epochs=1)
    trainer = MAGMATrainer(model=tiny_model(), args=args, train_dataset=labelled_dataset(n=10),
                           data_collator=collator())
    with pytest.raises(ValueError, match=r"--dataloader_drop_last .*--per_device_train_batch_size 16.*only 10"
                                         r".*set --dataloader_drop_last false"):
        trainer.train()
    assert not (tmp_path / "model.safetensors").exists()


def test_a_damaged_checkpoint_is_named_when_resuming(tmp_path):
    args = make_args(tmp_path, max_steps=2, save_strategy="steps", save_steps=2)
    MAGMATrainer(model=tiny_model(), args=args, train_dataset=labelled_dataset(), data_collator=collator()).train()
    weights = tmp_path / "checkpoint-2" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    args = make_args(tmp_path, max_steps=3, save_strategy="steps", save_steps=2)
    trainer = MAGMATrainer(model=tiny_model(), args=args, train_dataset=labelled_dataset(), data_collator=collator())
    with pytest.raises(ValueError, match=r"Cannot read the weights in .*checkpoint-2 .*Move that checkpoint folder"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))


def test_resuming_a_checkpoint_of_the_last_step_trains_no_extra_step(tmp_path, caplog):
    # 48 examples / 8 = 6 steps per epoch; max_steps 8 ends in the middle of the second epoch. The Trainer used to
    # restart that epoch and stop only after step 9.
    args = make_args(tmp_path, max_steps=8, save_strategy="steps", save_steps=8, logging_steps=1)
    MAGMATrainer(model=tiny_model(), args=args, train_dataset=labelled_dataset(), data_collator=collator()).train()
    trainer = MAGMATrainer(model=tiny_model(), args=args, train_dataset=labelled_dataset(), data_collator=collator())
    trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-8"))
    assert trainer.state.global_step == 8
    assert [entry["step"] for entry in trainer.state.log_history if "loss" in entry] == list(range(1, 9))
    assert "checkpoint-8 is at step 8 of 8: training is complete" in caplog.text


def test_a_save_that_fails_names_the_free_space_and_the_partial_checkpoint(tmp_path, monkeypatch):
    import errno

    save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        if str(f).endswith("optimizer.pt"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    args = make_args(tmp_path, max_steps=2, save_strategy="steps", save_steps=2)
    trainer = MAGMATrainer(model=tiny_model(), args=args, train_dataset=labelled_dataset(), data_collator=collator())
    with pytest.raises(OSError, match=r"Saving the checkpoint .*checkpoint-2 failed \(OSError: .*No space left on "
                                      r"device\); [0-9.]+ GiB free of [0-9.]+ GiB there\. The partial checkpoint is "
                                      r"left behind") as error:
        trainer.train()
    assert error.value.errno == errno.ENOSPC
    assert last_checkpoint(tmp_path) is None and (tmp_path / "checkpoint-2").is_dir()


def test_the_run_says_how_many_samples_each_magma_graph_holds_and_warns_when_accumulation_splits_it(tmp_path,
                                                                                                   caplog):
    args = make_args(tmp_path, max_steps=1, magma_start_step=0, magma_steps=1)
    with caplog.at_level(logging.INFO, logger="hf_magma.training.schedule"):
        MAGMATrainer(model=tiny_model(), args=args, train_dataset=labelled_dataset(n=16),
                     data_collator=collator()).train()
    assert "MAGMA batch: each MAGMA graph holds 8 samples (--per_device_train_batch_size 8)" in caplog.text
    assert "--gradient_accumulation_steps" not in caplog.text
    caplog.clear()
    args = make_args(tmp_path / "b", max_steps=1, magma_start_step=0, magma_steps=1, gradient_accumulation_steps=2)
    with caplog.at_level(logging.INFO, logger="hf_magma.training.schedule"):
        MAGMATrainer(model=tiny_model(), args=args, train_dataset=labelled_dataset(n=16),
                     data_collator=collator()).train()
    assert "an optimizer step sees 16 samples in 2 graph(s)" in caplog.text
    assert ("--gradient_accumulation_steps 2 splits each optimizer step into 2 micro-batches, each with its own "
            "MAGMA graph of 8 samples") in caplog.text
