"""Pipeline overhead: training images/s of the full pretraining pipeline against a bare loop of the same model.

The pipeline is what scripts/run_mae_magma.py runs (offline Fashion-MNIST through `load_image_datasets`, decoded
once into memory and augmented in batches on the training device, or with `--data_path workers` decoded and
augmented per image in DataLoader workers; `MAGMATrainer` with the schedule, per-term logging and the online probe);
the bare loop feeds the same model pre-made tensors with a plain AdamW step. Both use the MAGMA term (weight 1)
and are timed after warm-up steps, alternating bare and pipeline rounds (medians reported) so that load from
other work on the machine affects both alike.

    PYTHONPATH=src python benchmarks/bench_pipeline.py [--model demo|vit-tiny] [--data_path in-memory|workers]
        [--steps 30] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
from transformers import TrainerCallback, ViTMAEConfig

from hf_magma import ImageDataArguments, MAGMATrainer, MAGMATrainingArguments, ViTMAEWithMAGMA, load_image_datasets
from hf_magma.data.in_memory import InMemoryCollator, device_batch_transforms, load_in_memory
from hf_magma.data.transforms import ImageCollator, ImageTransform

MODELS = {
    # the model of recipes/fashion_mnist_cpu.yaml
    "demo": dict(
        image_size=28, patch_size=4, hidden_size=64, num_hidden_layers=4, num_attention_heads=2,
        intermediate_size=256, decoder_hidden_size=32, decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
        decoder_intermediate_size=128, norm_pix_loss=True,
    ),
    # ViT-Tiny as in the paper's CIFAR-100 setting, with a small decoder to fit the CPU
    "vit-tiny": dict(
        image_size=32, patch_size=4, hidden_size=192, num_hidden_layers=12, num_attention_heads=3,
        intermediate_size=768, decoder_hidden_size=128, decoder_num_hidden_layers=2, decoder_num_attention_heads=4,
        decoder_intermediate_size=512, norm_pix_loss=True,
    ),
}
MODEL = dict(MODELS["demo"])


def bare_loop(steps: int, warmup: int, batch_size: int) -> float:
    torch.manual_seed(0)
    model = ViTMAEWithMAGMA(ViTMAEConfig(**MODEL))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    size = MODEL["image_size"]
    batches = [torch.randn(batch_size, 3, size, size) for _ in range(4)]
    model.train()
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        loss = model(batches[step % len(batches)], magma_weight=1.0).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return steps * batch_size / (time.perf_counter() - start)


class StepTimer(TrainerCallback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end, self.steps = warmup, None, None, 0

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            self.start = time.perf_counter()
        elif state.global_step > self.warmup:
            self.end, self.steps = time.perf_counter(), state.global_step - self.warmup


def pipeline(steps: int, warmup: int, batch_size: int, workers: int, in_memory: bool) -> float:
    torch.manual_seed(0)
    data_args = ImageDataArguments(in_memory="true" if in_memory else "false")
    splits = load_image_datasets(data_args)
    model = ViTMAEWithMAGMA(ViTMAEConfig(**MODEL))
    timer = StepTimer(warmup)
    statistics = ((MODEL["image_size"],) * 2, [0.5] * 3, [0.5] * 3)
    crop = data_args.augmentation_settings()
    with tempfile.TemporaryDirectory() as output_dir:
        args = MAGMATrainingArguments(
            output_dir=output_dir, max_steps=warmup + steps, per_device_train_batch_size=batch_size,
            learning_rate=1e-3, magma_start_step=0, magma_steps=warmup + steps, logging_steps=10,
            save_strategy="no", report_to="none", disable_tqdm=True, use_cpu=True,
            dataloader_num_workers=0 if in_memory else workers,
        )
        if in_memory:  # what scripts/run_mae_magma.py does for Fashion-MNIST (--in_memory auto)
            held, skipped = load_in_memory(splits, data_args, "image", "label", 3)
            train_data, collator = held["train"], InMemoryCollator(skipped)
            transforms = device_batch_transforms(statistics, 3, crop, None, args.seed, args.device)
        else:
            transform = ImageTransform(*statistics, train=True, **crop)
            train_data, collator = splits["train"], ImageCollator(transform, "image", "label")
            transforms = None
        trainer = MAGMATrainer(model=model, args=args, train_dataset=train_data, data_collator=collator,
                               batch_transforms=transforms, num_labels=10, callbacks=[timer])
        trainer.train()
    return timer.steps * batch_size / (timer.end - timer.start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="alternate bare/pipeline this many times (medians)")
    parser.add_argument("--model", choices=sorted(MODELS), default="demo")
    parser.add_argument("--data_path", choices=["in-memory", "workers"], default="in-memory",
                        help="in-memory: decoded once, batches augmented on the device (what the scripts do for "
                        "Fashion-MNIST); workers: decoded and augmented per image in DataLoader workers")
    args = parser.parse_args()
    MODEL.clear()
    MODEL.update(MODELS[args.model])
    print(f"model {args.model}, torch threads: {torch.get_num_threads()}, batch {args.batch_size}, "
          f"{args.steps} timed steps, data path {args.data_path}, {args.workers} DataLoader worker(s) (workers path), "
          f"{args.rounds} rounds; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    bare, piped = [], []
    for round_index in range(args.rounds):
        bare.append(bare_loop(args.steps, args.warmup, args.batch_size))
        piped.append(pipeline(args.steps, args.warmup, args.batch_size, args.workers, args.data_path == "in-memory"))
        print(f"round {round_index + 1}: bare loop {bare[-1]:8.1f} images/s   pipeline {piped[-1]:8.1f} images/s   "
              f"ratio {piped[-1] / bare[-1]:.3f}")
    ratio = statistics.median(piped) / statistics.median(bare)
    print(f"median: bare loop {statistics.median(bare):.1f} images/s, "
          f"pipeline {statistics.median(piped):.1f} images/s")
    print(f"pipeline / bare = {ratio:.3f}  (overhead {100 * (1 - ratio):.1f}%; goal <= 10%); "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
