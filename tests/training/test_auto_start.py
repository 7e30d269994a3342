"""`--magma_start_epoch auto`: the rise rule on synthetic curves, in a run (the decision, its records, exact resume
before and after it) and across two processes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hf_magma.data.transforms import ImageCollator, ImageTransform
from hf_magma.models.mae import ViTMAEWithMAGMA
from hf_magma.records.trainer_state import load_log_history
from hf_magma.training.auto_start import MAGMAAutoStart
from hf_magma.training.trainer import MAGMATrainer
from hf_magma.training.training_args import MAGMATrainingArguments
from tests.helpers import ROOT
from tests.helpers.tiny import tiny_vit_mae_config


def decide(curve, **rule) -> int | None:
    """The step at which the rule switches the term on for ``curve`` (one value per window of 10 steps)."""
    detector = MAGMAAutoStart(**rule)
    for window, value in enumerate(curve, start=1):
        if detector.observe(10 * window, value):
            return detector.start_step
    return None


def test_a_rising_term_switches_on_after_patience_windows_past_the_warm_up():
    rising = [0.001 * 1.3 ** k for k in range(30)]
    assert decide(rising, patience=3) == 40  # windows 2, 3, 4 are above the first one: on after window 4
    assert decide(rising, patience=3, min_step=100) == 100  # no decision before step 100
    assert decide(rising, patience=5) == 60


def test_a_flat_or_noisy_flat_term_never_switches_on():
    assert decide([0.05] * 50) is None
    noise = np.random.default_rng(0).uniform(-0.02, 0.02, 200)
    assert decide(list(0.05 * (1 + noise))) is None  # noise of +-2 % stays below the 5 % rise
    assert decide(list(0.05 * (1 + noise)), rise=0.005) is not None  # ... but not below 0.5 %


def test_a_noisy_rising_term_and_a_falling_then_rising_one_switch_on_after_their_minimum():
    noise = np.random.default_rng(1).normal(0, 0.03, 60)
    noisy = [0.01 * (1 + 0.1 * k) * (1 + n) for k, n in enumerate(noise)]
    step = decide(noisy)
    assert step is not None and step <= 150
    u_shape = [0.1 - 0.01 * k for k in range(8)] + [0.03 + 0.01 * k for k in range(20)]
    step = decide(u_shape)
    assert step is not None and step > 80  # after the minimum (window 8), once it climbed 5 % above it


def test_non_finite_windows_are_left_out_and_the_state_round_trips():
    detector = MAGMAAutoStart(patience=2)
    assert not detector.observe(10, math.nan) and detector.rule.windows == 0
    for step, value in ((10, 1.0), (20, 1.2)):
        detector.observe(step, value)
    copy = MAGMAAutoStart(**detector.state()["args"])
    copy.load_state(json.loads(json.dumps(detector.state())))  # as trainer_state.json keeps it
    assert copy.rule == detector.rule
    assert copy.observe(30, 1.4) == detector.observe(30, 1.4) is True and copy.start_step == 30


@pytest.mark.parametrize("value, message", [("sometimes", "must be a number or `auto`"), ("-1", "magma_start_epoch")])
def test_the_start_option_takes_a_number_or_auto(tmp_path, value, message):
    with pytest.raises(ValueError, match=message):
        MAGMATrainingArguments(output_dir=str(tmp_path), magma_start_epoch=value, use_cpu=True)
    args = MAGMATrainingArguments(output_dir=str(tmp_path), magma_start_epoch="AUTO", use_cpu=True)
    assert args.magma_start_epoch == "auto" and args.magma_auto_start and args.magma_window(10) is None
    assert MAGMATrainingArguments(output_dir=str(tmp_path), magma_start_epoch="2.5", use_cpu=True).magma_window(4) \
        == (10, 410)
    with pytest.raises(ValueError, match="logging"):
        MAGMATrainer(model=ViTMAEWithMAGMA(tiny_vit_mae_config()), args=MAGMATrainingArguments(
            output_dir=str(tmp_path), magma_start_epoch="auto", logging_strategy="no", use_cpu=True))


def images(n=48, seed=0):
    import datasets

    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)
    return datasets.Dataset.from_dict({"image": list(data), "label": list(rng.integers(0, 3, n))})


def auto_args(output_dir, **overrides):
    values = dict(output_dir=str(output_dir), per_device_train_batch_size=8, max_steps=18, logging_steps=1,
                  save_strategy="steps", save_steps=2, report_to="none", use_cpu=True, disable_tqdm=True, seed=3,
                  magma_start_epoch="auto", magma_epochs=1, magma_auto_patience=1, magma_auto_rise=1e-6,
                  magma_auto_min_step=3, dataloader_num_workers=0, online_probe=False)
    values.update(overrides)
    return MAGMATrainingArguments(**values)


def train(output_dir, resume=None, **overrides):
    torch.manual_seed(0)
    model = ViTMAEWithMAGMA(tiny_vit_mae_config())
    collator = ImageCollator(ImageTransform(16, mean=[0.5], std=[0.5], train=False), "image")
    trainer = MAGMATrainer(model=model, args=auto_args(output_dir, **overrides), train_dataset=images(),
                           data_collator=collator)
    trainer.train(resume_from_checkpoint=resume)
    return trainer


def test_a_run_switches_on_once_records_it_and_resumes_exactly_before_and_after_the_switch(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the runs are compared bit for bit
    try:
        reference = train(tmp_path / "reference")
        decided = reference.auto_start.start_step
        assert decided is not None and 3 <= decided < 16, decided
        history = [e for e in load_log_history(tmp_path / "reference") if "loss" in e]
        weights = [e["magma_weight"] for e in history]  # logged at the end of steps 1..18 (weight of that step)
        epoch = reference.steps_per_epoch
        assert weights == [1.0 if decided < step <= decided + epoch else 0.0 for step in range(1, 19)]
        marker = json.loads((tmp_path / "reference" / "hf_magma_run.json").read_text())
        assert marker["magma_window"]["start_step"] == decided == marker["magma_window"]["decided_at_step"]
        reference.create_model_card()
        card = (tmp_path / "reference" / "README.md").read_text()
        assert f"switched on at step {decided}" in card and "automatic start (e_st auto)" in card

        before, after = decided - decided % 2, decided - decided % 2 + 4  # checkpoints either side of the switch
        for checkpoint in (before, after):
            if checkpoint < 2:
                continue
            resumed = train(tmp_path / f"from{checkpoint}",
                            resume=str(tmp_path / "reference" / f"checkpoint-{checkpoint}"))
            assert resumed.auto_start.start_step == decided
            mine = [e for e in load_log_history(tmp_path / f"from{checkpoint}")
                    if "loss" in e and e["step"] > checkpoint]
            assert [e["step"] for e in mine] == list(range(checkpoint + 1, 19))
            for ours, theirs in zip(mine, history[checkpoint:], strict=True):
                for key in ("loss", "magma_loss", "magma_weight", "reconstruction_loss"):
                    assert ours[key] == theirs[key], (checkpoint, ours["step"], key)
            for name, tensor in reference.model.state_dict().items():
                assert torch.equal(tensor, resumed.model.state_dict()[name]), (checkpoint, name)
    finally:
        torch.set_num_threads(threads)


def test_a_run_that_never_sees_a_rise_says_so(tmp_path, caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger="hf_magma"):
        trainer = train(tmp_path / "never", max_steps=6, save_strategy="no", magma_auto_rise=1e6)
    assert trainer.auto_start.start_step is None
    assert all(e["magma_weight"] == 0.0 for e in trainer.state.log_history if "magma_weight" in e)
    assert "the MAGMA term never rose" in caplog.text
    assert trainer.magma_window_used()["start_step"] is None


def test_two_processes_take_the_same_decision_from_the_reduced_term(make_image_folder, tmp_path):
    make_image_folder(tmp_path / "images", n_per_class=12)
    record = tmp_path / "record"
    record.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]), "ACCELERATE_USE_CPU": "1",
           "OMP_NUM_THREADS": "1"}
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "tests.helpers.auto_start_worker",
               str(record), "--train_dir", str(tmp_path / "images"), "--output_dir", str(tmp_path / "out"),
               "--config_overrides", "hidden_size=32,num_hidden_layers=2,num_attention_heads=2,intermediate_size=64,"
               "image_size=16,patch_size=4,decoder_hidden_size=32,decoder_num_hidden_layers=1,"
               "decoder_num_attention_heads=2,decoder_intermediate_size=64",
               "--max_steps", "12", "--logging_steps", "1", "--per_device_train_batch_size", "4",
               "--magma_start_epoch", "auto", "--magma_epochs", "1", "--magma_auto_patience", "1",
               "--magma_auto_rise", "0.000001", "--magma_auto_min_step", "2", "--save_strategy", "no",
               "--report_to", "none", "--use_cpu", "true", "--disable_tqdm", "true", "--online_probe", "false"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((record / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert ranks[0]["decided"] is not None and ranks[0]["decided"] == ranks[1]["decided"]
    assert ranks[0]["weights"] == ranks[1]["weights"] and 1.0 in ranks[0]["weights"]
    # Each process saw its own shard: the decision is taken from the reduced term.
    assert ranks[0]["local_terms"] != ranks[1]["local_terms"]
