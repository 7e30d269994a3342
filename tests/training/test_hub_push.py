"""Trainer pushes to a localhost Hub with the real clients: success, every hub_strategy, and failures."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import Trainer, TrainerCallback, TrainingArguments, ViTImageProcessor, ViTMAEConfig

from hf_magma import ViTMAEWithMAGMA
from hf_magma.training.hub_push import HubPushMixin
from tests.helpers.tiny import tiny_vit_mae_config

TOKEN_ENV = "HF_TOKEN"


class PushingTrainer(HubPushMixin, Trainer):
    """The smallest Trainer using the mixin (MAGMATrainer uses it the same way)."""


class RandomImages(torch.utils.data.Dataset):
    def __init__(self, n: int = 8, size: int = 16):
        generator = torch.Generator().manual_seed(0)
        self.images = torch.randn(n, 3, size, size, generator=generator)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"pixel_values": self.images[i]}


def tiny_config() -> ViTMAEConfig:
    return tiny_vit_mae_config(num_hidden_layers=3, mask_ratio=0.5, magma_weight=1.0)


def make_trainer(
    output_dir: Path, repo_id: str, strategy: str = "every_save", max_steps: int = 4, callbacks=(), always_push=False
):
    torch.manual_seed(0)
    args = TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=4,
        max_steps=max_steps,
        save_steps=2,
        logging_steps=1,
        learning_rate=1e-3,
        report_to="none",
        disable_tqdm=True,
        push_to_hub=True,
        hub_model_id=repo_id,
        hub_strategy=strategy,
        hub_always_push=always_push,
        use_cpu=True,
        dataloader_num_workers=0,
    )
    trainer = PushingTrainer(
        model=ViTMAEWithMAGMA(tiny_config()),
        args=args,
        train_dataset=RandomImages(),
        processing_class=ViTImageProcessor(size={"height": 16, "width": 16}),
        callbacks=list(callbacks),
    )
    trainer.model_card_kwargs = {"dataset_name": "org/tiny-images"}
    return trainer


def assert_no_token(token: str, *texts: str | bytes) -> None:
    for text in texts:
        data = text.encode() if isinstance(text, str) else text
        assert token.encode() not in data


def test_trainer_push_then_automodel_in_fresh_process(hub_server, tmp_path, caplog):
    repo_id = "org/m-mae-tiny"
    trainer = make_trainer(tmp_path / "run", repo_id)
    with caplog.at_level(logging.WARNING):
        trainer.train()
        trainer.push_to_hub(dataset="org/tiny-images")

    files = hub_server.files(repo_id)
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "README.md"} <= set(files)
    assert not any(name.startswith("checkpoint-") for name in files)
    config = json.loads(files["config.json"])
    assert config["model_type"] == "vit_mae"
    assert config["magma_reference_layers"] == [1] and config["magma_target_layer"] == 2
    assert config["magma_weight"] == 1.0
    card = files["README.md"].decode()
    assert "M-MAE" in card and "library_name: transformers" in card and "org/tiny-images" in card
    assert "arXiv" in card and f'AutoModel.from_pretrained("{repo_id}", subfolder="encoder")' in card
    assert "optimisation steps | 4" in card  # the card carries the final training summary
    titles = hub_server.commit_titles(repo_id)
    assert "Training in progress, step 2" in titles and titles[-1] == "End of training"
    token = os.environ[TOKEN_ENV]
    assert_no_token(token, caplog.text, *files.values())
    assert not hub_server.unknown_requests

    # A fresh interpreter that never imports hf_magma loads the encoder with transformers alone.
    out = tmp_path / "encoder.safetensors"
    script = textwrap.dedent(
        f"""
        import sys
        from safetensors.torch import save_file
        from transformers import AutoModel
        model = AutoModel.from_pretrained({repo_id!r})
        assert type(model).__name__ == "ViTMAEModel", type(model)
        assert "hf_magma" not in sys.modules
        save_file({{k: v.contiguous() for k, v in model.state_dict().items()}}, {str(out)!r})
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_no_token(token, result.stdout, result.stderr)
    loaded = load_file(str(out))
    expected = {k: v.detach() for k, v in trainer.model.vit.state_dict().items()}
    assert set(loaded) == set(expected)
    for name, tensor in expected.items():
        torch.testing.assert_close(loaded[name], tensor, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("strategy", "expected", "absent"),
    [
        ("checkpoint", {"last-checkpoint/model.safetensors", "last-checkpoint/trainer_state.json"}, set()),
        ("all_checkpoints", {"checkpoint-2/model.safetensors", "checkpoint-4/model.safetensors"}, set()),
        ("end", {"model.safetensors", "README.md"}, {"last-checkpoint/model.safetensors"}),
    ],
)
def test_hub_strategies(hub_server, tmp_path, strategy, expected, absent):
    repo_id = f"org/strategy-{strategy.replace('_', '-')}"
    # With all_checkpoints every checkpoint must arrive, so no save may skip its push because the previous one is
    # still uploading (which the Trainer does by default, and which depends on the machine's load).
    trainer = make_trainer(tmp_path / "run", repo_id, strategy=strategy, always_push=strategy == "all_checkpoints")
    trainer.train()
    trainer.push_to_hub()
    files = set(hub_server.files(repo_id))
    assert expected <= files and not absent & files
    titles = hub_server.commit_titles(repo_id)
    if strategy == "end":
        assert not any(t.startswith("Training in progress") for t in titles)
    state = json.loads(hub_server.files(repo_id).get("last-checkpoint/trainer_state.json", b"{}") or b"{}")
    if strategy == "checkpoint":
        # The Trainer skips a save's push while the previous one runs (hub_always_push=False): step 2 or 4.
        assert state["global_step"] in (2, 4)


class _Outage(TrainerCallback):
    """Makes the Hub fail after step 1 and come back after step 3, waiting for the failed push to finish."""

    def __init__(self, hub, mode: str):
        self.hub, self.mode, self.trainer = hub, mode, None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 1 and self.mode == "500":
            self.hub.fail_with(500)
        elif state.global_step == 1 and self.mode == "down":
            self.hub.stop()
        elif state.global_step == 3:
            self.trainer._finish_current_push()  # the step-2 push has failed by now
            self.hub.recover()
            self.hub.start()


@pytest.mark.parametrize(("mode", "strategy"),
                         [("500", "all_checkpoints"), ("down", "every_save"), ("down-at-start", "every_save")])
def test_failed_pushes_never_stop_training_and_are_retried(hub_server, tmp_path, caplog, mode, strategy):
    repo_id = f"org/flaky-{mode}"
    outage = _Outage(hub_server, "none" if mode == "down-at-start" else mode)
    if mode == "down-at-start":
        hub_server.stop()
    with caplog.at_level(logging.WARNING, logger="hf_magma"):
        trainer = make_trainer(tmp_path / "run", repo_id, strategy=strategy, callbacks=[outage])
        outage.trainer = trainer
        result = trainer.train()
        trainer.push_to_hub()

    assert result.global_step == 4
    failures = [r.getMessage() for r in caplog.records
                if r.name.startswith("hf_magma") and r.levelno == logging.WARNING]
    if mode == "down-at-start":
        assert any("Could not create the Hub repository" in m for m in failures), failures
    else:
        assert any("failed" in m and "retried at the next save" in m for m in failures), failures
    assert_no_token(os.environ[TOKEN_ENV], caplog.text)

    # Local checkpoints are complete and untouched by the failed push.
    for step in (2, 4):
        folder = tmp_path / "run" / f"checkpoint-{step}"
        assert (folder / "model.safetensors").is_file() and (folder / "trainer_state.json").is_file()
    # After recovery the step-4 save pushed the newest weights (and, for all_checkpoints, retried checkpoint-2).
    files = hub_server.files(repo_id)
    local = load_file(str(tmp_path / "run" / "checkpoint-4" / "model.safetensors"))
    pushed_path = tmp_path / "pushed.safetensors"
    pushed_path.write_bytes(files["model.safetensors"])
    pushed = load_file(str(pushed_path))
    for name, tensor in local.items():
        assert np.array_equal(pushed[name].numpy(), tensor.numpy()), name
    if strategy == "all_checkpoints":
        assert {"checkpoint-2/model.safetensors", "checkpoint-4/model.safetensors"} <= set(files)
        assert files["checkpoint-2/model.safetensors"] == (
            tmp_path / "run" / "checkpoint-2" / "model.safetensors"
        ).read_bytes()
    assert "Training in progress, step 4" in hub_server.commit_titles(repo_id)


def test_dataset_push_and_streaming_load(hub_server):
    import datasets
    from PIL import Image

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)) for _ in range(6)]
    labels = [0, 1, 2, 0, 1, 2]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b", "c"])})
    datasets.Dataset.from_dict({"image": images, "label": labels}, features=features).push_to_hub("org/tiny-images")

    streamed = datasets.load_dataset("org/tiny-images", split="train", streaming=True)
    assert isinstance(streamed, datasets.IterableDataset)
    rows = list(streamed)
    assert [row["label"] for row in rows] == labels
    for row, image in zip(rows, images, strict=True):
        assert np.array_equal(np.asarray(row["image"].convert("RGB")), np.asarray(image))
    assert not hub_server.unknown_requests
