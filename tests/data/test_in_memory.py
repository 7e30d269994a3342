"""The fast path of training: in-memory data augmented on the device, no host-device sync in the step, and the
GPU settings (bf16 autocast, SDPA, fused AdamW, torch.compile) exercised on CPU."""

import collections
import os
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from transformers import ViTMAEConfig

import hf_magma
from hf_magma.data.in_memory import (
    InMemoryCollator,
    InMemoryImageDataset,
    decode_in_memory,
    device_batch_transforms,
    load_in_memory,
)
from hf_magma.models.mae import ViTMAEWithMAGMA
from hf_magma.training.trainer import MAGMATrainer
from hf_magma.training.training_args import MAGMATrainingArguments
from tests.helpers.tiny import TINY_DECODER, TINY_VIT

PACKAGE = str(Path(hf_magma.__file__).resolve().parent)
TINY = {**TINY_VIT, **TINY_DECODER, "num_hidden_layers": 3}
CROP = {"scale": (0.2, 1.0), "ratio": (3 / 4, 4 / 3), "hflip": 0.5, "random_crop": True}


def in_memory_trainer(tmp_path, model=None, n=64, **overrides):
    torch.manual_seed(0)
    model = model or ViTMAEWithMAGMA(ViTMAEConfig(**TINY))
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 20, 20), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 3, (n,), generator=generator)
    values = dict(output_dir=str(tmp_path), per_device_train_batch_size=8, report_to="none", use_cpu=True,
                  disable_tqdm=True, save_strategy="no", logging_steps=3, max_steps=6, seed=0,
                  magma_start_step=0, magma_steps=100, uniformity_weight=0.01)
    values.update(overrides)
    args = MAGMATrainingArguments(**values)
    transforms = device_batch_transforms(((16, 16), [0.5] * 3, [0.5] * 3), 3, CROP, None, args.seed, args.device)
    return MAGMATrainer(model=model, args=args, train_dataset=InMemoryImageDataset(images, labels),
                        data_collator=InMemoryCollator(), batch_transforms=transforms, num_labels=3)


class SyncCounter:
    """Counts Tensor.item / .cpu() / .tolist() (and implicit bool/float/int reads) called from the package's own
    code, split by whether the trainer is inside `log` at the time."""

    METHODS = ("item", "cpu", "tolist", "__bool__", "__float__", "__int__")

    def __init__(self, trainer):
        self.trainer = trainer
        self.calls = collections.Counter()
        self.logging = False

    def __enter__(self):
        self.originals = {name: getattr(torch.Tensor, name) for name in self.METHODS}
        for name, original in self.originals.items():
            setattr(torch.Tensor, name, self._wrap(name, original))
        log = self.trainer.log

        def logged(*args, **kwargs):
            self.logging = True
            try:
                return log(*args, **kwargs)
            finally:
                self.logging = False

        self.trainer.log = logged
        return self

    def _wrap(self, name, original):
        counter = self

        def wrapper(tensor, *args, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if os.path.realpath(caller).startswith(PACKAGE):
                phase = "logging" if counter.logging else "step"
                frame = sys._getframe(1)
                counter.calls[(phase, name, f"{os.path.basename(caller)}:{frame.f_lineno}")] += 1
            return original(tensor, *args, **kwargs)

        return wrapper

    def __exit__(self, *exc):
        for name, original in self.originals.items():
            setattr(torch.Tensor, name, original)
        del self.trainer.log

    def count(self, phase):
        return {key: n for key, n in self.calls.items() if key[0] == phase}


def test_no_host_sync_from_the_package_between_logging_steps(tmp_path):
    trainer = in_memory_trainer(tmp_path)
    with SyncCounter(trainer) as counter:
        trainer.train()
    assert counter.count("step") == {}, counter.count("step")
    # The counter sees the package's calls: the read-back at each logging step is counted, as logging.
    assert counter.count("logging"), counter.calls
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert [entry["step"] for entry in logs] == [3, 6]
    for entry in logs:
        expected = (entry["reconstruction_loss"] + entry["magma_weight"] * entry["magma_loss"]
                    + 0.01 * entry["uniformity_loss"])
        assert entry["loss"] == pytest.approx(expected, rel=1e-5)
        assert 0 <= entry["online_accuracy"] <= 1


def test_the_sync_counter_sees_a_read_back_in_the_step(tmp_path, monkeypatch):
    trainer = in_memory_trainer(tmp_path, max_steps=2, logging_steps=2)
    accumulate = trainer._accumulate

    # A step that reads each term back to the host, compiled as if it were the package's trainer.py.
    source = ("def syncing(phase, values, count=1.0):\n"
              "    return accumulate(phase, {k: (v.item() if isinstance(v, torch.Tensor) else v)\n"
              "                              for k, v in values.items()}, count)\n")
    namespace = {"accumulate": accumulate, "torch": torch}
    exec(compile(source, os.path.join(PACKAGE, "trainer.py"), "exec"), namespace)
    monkeypatch.setattr(trainer, "_accumulate", namespace["syncing"])
    with SyncCounter(trainer) as counter:
        trainer.train()
    assert counter.count("step")


def test_in_memory_decoding_and_budget():
    import datasets

    images = np.random.default_rng(0).integers(0, 256, (10, 28, 28), dtype=np.uint8)
    features = datasets.Features({"image": datasets.Array2D((28, 28), "uint8"),
                                  "label": datasets.ClassLabel(num_classes=2)})
    dataset = datasets.Dataset.from_dict({"image": images, "label": [0, 1] * 5}, features=features)
    dataset = dataset.with_format("numpy", columns=["image"], output_all_columns=True, dtype=np.uint8)
    held, labels, skipped = decode_in_memory(dataset, "image", "label")
    assert held.dtype == torch.uint8 and held.shape == (10, 1, 28, 28) and skipped == 0
    assert torch.equal(held[:, 0], torch.from_numpy(images)) and labels.tolist() == [0, 1] * 5
    batch = InMemoryCollator()(InMemoryImageDataset(held, labels).__getitems__([3, 1]))
    assert torch.equal(batch["pixel_values"], held[[3, 1]]) and batch["labels"].tolist() == [1, 1]

    class Options:
        in_memory, in_memory_max_gb = "true", 1e-6

    with pytest.raises(ValueError, match="in_memory_max_gb"):
        load_in_memory({"train": dataset}, Options, "image", "label", 3)
    Options.in_memory = "auto"
    assert load_in_memory({"train": dataset}, Options, "image", "label", 3) is None


def test_bf16_autocast_keeps_the_magma_kernel_in_float32():
    torch.manual_seed(0)
    model = ViTMAEWithMAGMA(ViTMAEConfig(**TINY, attn_implementation="sdpa"))
    assert model.config._attn_implementation == "sdpa"
    pixel_values = torch.randn(6, 3, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model(pixel_values, magma_weight=1.0)
    assert outputs.logits.dtype == torch.bfloat16
    assert outputs.magma_loss.dtype == torch.float32 and outputs.uniformity_loss.dtype == torch.float32
    outputs.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_bf16_and_fused_adamw_train_through_the_trainer(tmp_path):
    trainer = in_memory_trainer(tmp_path, bf16=True, optim="adamw_torch_fused", max_steps=3, logging_steps=3)
    trainer.train()
    assert type(trainer.optimizer.optimizer).__name__ == "AdamW"
    assert trainer.optimizer.optimizer.defaults["fused"] is True
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 1 and np.isfinite(logs[0]["loss"]) and np.isfinite(logs[0]["magma_loss"])


@pytest.mark.slow
def test_a_compiled_training_step_matches_eager(tmp_path, monkeypatch):
    inductor_config = pytest.importorskip("torch._inductor.config")
    # The masks' random draws: inductor's own generator would give other masks than eager's.
    monkeypatch.setattr(inductor_config, "fallback_random", True)
    losses = {}
    for compiled in (False, True):
        trainer = in_memory_trainer(tmp_path / str(compiled), max_steps=2, logging_steps=1, torch_compile=compiled,
                                    online_probe=False)
        trainer.train()
        losses[compiled] = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert losses[True] == pytest.approx(losses[False], rel=1e-3)


def test_in_memory_decoding_skips_a_few_broken_images_and_refuses_a_broken_split(tmp_path):
    import datasets

    good = []
    for i in range(20):
        path = tmp_path / f"good_{i}.png"
        PIL.Image.fromarray(np.full((8, 8, 3), i * 10, dtype=np.uint8)).save(path)
        good.append(str(path))
    broken = []
    for i in range(20):
        path = tmp_path / f"broken_{i}.png"
        path.write_bytes(b"not an image")
        broken.append(str(path))
    features = datasets.Features({"image": datasets.Image(decode=False)})

    mostly_good = datasets.Dataset.from_dict({"image": good + broken[:2]}, features=features)
    held, _, skipped = decode_in_memory(mostly_good, "image")
    assert held.shape == (20, 3, 8, 8) and skipped == 2

    mostly_broken = datasets.Dataset.from_dict({"image": good[:5] + broken[:12]}, features=features)
    with pytest.raises(ValueError, match=r"12 of the 17 training images are unreadable.*broken_0\.png"):
        decode_in_memory(mostly_broken, "image")
    all_broken = datasets.Dataset.from_dict({"image": broken[:3]}, features=features)  # too few for a share
    with pytest.raises(ValueError, match=r"3 of the 3 training images are unreadable"):
        decode_in_memory(all_broken, "image")


def test_each_training_step_draws_its_own_augmentation_and_a_seed_repeats_it(tmp_path):
    trainer = in_memory_trainer(tmp_path, max_steps=4, logging_steps=4)
    transform = trainer.batch_transforms["train"]
    seeds = []

    def recording(pixel_values, seed):
        seeds.append(seed)
        return transform(pixel_values, seed)

    trainer.batch_transforms["train"] = recording
    trainer.train()
    assert len(seeds) == 4 and len(set(seeds)) == 4, seeds  # one seed per optimizer step, none repeated
    batch = torch.randint(0, 256, (8, 1, 20, 20), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    first, second = (transform(batch, seed)["pixel_values"] for seed in seeds[:2])
    assert not torch.equal(first, second)  # the steps' crops and flips differ ...
    assert torch.equal(first, transform(batch, seeds[0])["pixel_values"])  # ... and a step's seed redraws its own
