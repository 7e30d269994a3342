"""What a run compares before it resumes, and which checkpoint folders it refuses to go on beside
(`hf_magma.training.run_guard`)."""

import json

import pytest

from hf_magma.training.run_guard import (
    RUN_MARKER,
    check_foreign_checkpoints,
    run_settings,
    settings_differences,
    write_marker,
)
from hf_magma.training.training_args import MAGMATrainingArguments


def test_only_checkpoints_the_run_could_save_into_and_did_not_write_are_refused(tmp_path):
    write_marker(tmp_path / "checkpoint-4", {"series": "ours"})
    (tmp_path / "checkpoint-4" / "trainer_state.json").write_text(json.dumps({"global_step": 4}))
    (tmp_path / "checkpoint-2").mkdir()  # before the resumed step: never saved into again
    (tmp_path / "checkpoint-2" / "notes.txt").write_text("mine")
    (tmp_path / "checkpoint-5").mkdir()  # ours, killed before its marker was in place
    (tmp_path / "checkpoint-5" / f"{RUN_MARKER}.123.tmp").write_text("{")
    write_marker(tmp_path / "checkpoint-6", {"series": "ours"})  # ours, partial
    check_foreign_checkpoints(tmp_path, "ours", str(tmp_path / "checkpoint-4"))

    write_marker(tmp_path / "checkpoint-8", {"series": "another run"})
    (tmp_path / "checkpoint-9x").mkdir()
    (tmp_path / "checkpoint-9x" / "notes.txt").write_text("mine")  # not a name the run saves under
    with pytest.raises(FileExistsError, match=r"holds checkpoint-8, which this run did not write"):
        check_foreign_checkpoints(tmp_path, "ours", str(tmp_path / "checkpoint-4"))
    with pytest.raises(FileExistsError, match=r"holds checkpoint-2, checkpoint-8,.*Going on from step 0"):
        check_foreign_checkpoints(tmp_path, "ours", None)


@pytest.mark.parametrize("change, differences", [
    ({"seed": 1}, ["seed: 0 -> 1"]),
    ({"magma_weight": 0.0}, ["schedule.magma_weight: 1.0 -> 0.0"]),
    ({"uniformity_weight": 0.01}, ["schedule.uniformity_weight: 0.0 -> 0.01"]),
    ({"magma_start_epoch": 5}, ["schedule.magma_start_epoch: 10 -> 5"]),
    ({"magma_epochs": 50}, ["schedule.magma_epochs: 100 -> 50"]),
    ({"magma_start_step": 3, "magma_steps": 6},
     ["schedule.magma_start_step: null -> 3", "schedule.magma_steps: null -> 6"]),
    ({"mask_ratio": 0.5}, ["model.mask_ratio: 0.75 -> 0.5"]),
    ({"num_hidden_layers": 3}, ["model.num_hidden_layers: 2 -> 3"]),
    ({"data": {"source": "/data/other"}}, ['data.source: "/data/mine" -> "/data/other"']),
    ({"learning_rate": 5e-3}, ["training.learning_rate: 5e-05 -> 0.005"]),
    ({"lr_scheduler_type": "cosine"}, ['training.lr_scheduler_type: "linear" -> "cosine"']),
    ({"warmup_steps": 10}, ["training.warmup_steps: 0 -> 10"]),
    ({"per_device_train_batch_size": 4}, ["training.per_device_train_batch_size: 8 -> 4"]),
    ({"gradient_accumulation_steps": 2}, ["training.gradient_accumulation_steps: 1 -> 2"]),
    ({"magma_gather": True}, ["training.magma_gather: false -> true"]),
    ({"optim": "sgd"}, ['training.optim: "adamw_torch_fused" -> "sgd"']),
    ({"weight_decay": 0.05}, ["training.weight_decay: 0.0 -> 0.05"]),
    ({"adam_beta2": 0.95}, ["training.adam_beta2: 0.999 -> 0.95"]),
    ({"adam_epsilon": 1e-6}, ["training.adam_epsilon: 1e-08 -> 1e-06"]),
    ({"max_grad_norm": 0.5}, ["training.max_grad_norm: 1.0 -> 0.5"]),
])
def test_the_settings_that_define_a_run_are_compared(vit_mae_config, tmp_path, change, differences):
    def settings(seed=0, data=None, mask_ratio=0.75, num_hidden_layers=2, **schedule):
        args = MAGMATrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True, seed=seed, **schedule)
        config = vit_mae_config(mask_ratio=mask_ratio, num_hidden_layers=num_hidden_layers)
        return run_settings(config, args, {"source": "/data/mine", "split": "train", **(data or {})})

    assert settings_differences(settings(), settings()) == []
    assert settings_differences(settings(), settings(**change)) == differences


def test_how_a_run_was_called_or_saved_is_not_compared(vit_mae_config, tmp_path):
    args = MAGMATrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True,
                                  max_steps=100, save_total_limit=1, logging_steps=7)
    config = vit_mae_config()
    saved = run_settings(config, args, None)
    config.output_hidden_states, config._name_or_path = True, "somewhere/else"
    more = MAGMATrainingArguments(output_dir=str(tmp_path / "other"), report_to="none", use_cpu=True, max_steps=200)
    assert settings_differences(saved, run_settings(config, more, {"source": "/data/mine"})) == []


def test_a_marker_of_an_older_version_without_training_settings_is_compared_on_the_rest(vit_mae_config, tmp_path):
    args = MAGMATrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    present = run_settings(vit_mae_config(), args, None)
    older = {key: value for key, value in present.items() if key != "training"}
    assert settings_differences(older, present) == []
    assert settings_differences({**older, "seed": 1}, present) == ["seed: 1 -> 42"]
