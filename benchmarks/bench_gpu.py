"""Everything that matters for speed on one GPU, in one command that finishes in about 5 minutes (JSON + table).

    python benchmarks/bench_gpu.py --output bench_gpu.json        # on a GPU
    python benchmarks/bench_gpu.py --smoke --output /tmp/b.json   # the same code on CPU, tiny settings (tested)

Measures
  1. model steps: ViT-B/16 at 224 px in bf16 autocast, MAE (transformers' ViTMAEForPreTraining), M-MAE and
     MU-MAE (ViTMAEWithMAGMA): forward, backward and a fused AdamW step, eager and torch.compile'd; images/s,
     peak memory, MAGMA's time and memory overhead over MAE, and MFU (FLOPs of one step counted with
     torch.utils.flop_counter.FlopCounterMode, against --peak_tflops, 790 TFLOP/s: the bf16 matmul rate measured
     on the H200). The batch is the largest that fits, from --batch_size (512) down by halves.
  2. the 224 px JPEG data path alone (decode + random resized crop in --workers DataLoader workers, as the
     scripts do for large image folders) on synthetic JPEGs of ImageNet-typical sizes made on the spot,
     against the model's images/s;
  3. the in-memory path: Fashion-MNIST-shaped uint8 data resident on the GPU, augmented in batches there
     (hf_magma.data.crop), with the demo model of recipes/fashion_mnist_cpu.yaml and a ViT-Tiny: images/s and the
     time of one 100-epoch run over 60,000 images;
  4. the pretraining script under scripts/accelerate_configs/fsdp.yaml (one process, a few ViT-B/16 steps with
     --magma_gather): that accelerate ran FSDP, that checkpoints and the final folder hold full weights and
     encoder/, and that the encoder loads as a plain ViT;
  5. the machine: GPU, torch, transformers, CUDA.
Every measurement is time-boxed against --time_budget (seconds since start): compiled runs go to a subprocess
killed when the budget is spent, and what did not fit is reported as skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import transformers  # noqa: E402
from transformers import ViTMAEConfig, ViTMAEForPreTraining  # noqa: E402

from hf_magma.data.crop import BatchImageTransform  # noqa: E402
from hf_magma.models.mae import ViTMAEWithMAGMA  # noqa: E402

VIT_B = dict(image_size=224, patch_size=16, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
             intermediate_size=3072, decoder_hidden_size=512, decoder_num_hidden_layers=8,
             decoder_num_attention_heads=16, decoder_intermediate_size=2048, norm_pix_loss=True, mask_ratio=0.75)
SMOKE_MODEL = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=64, decoder_hidden_size=32, decoder_num_hidden_layers=1,
                   decoder_num_attention_heads=2, decoder_intermediate_size=64, norm_pix_loss=True, mask_ratio=0.75)
SMALL_MODELS = {
    "demo": dict(image_size=28, patch_size=4, hidden_size=64, num_hidden_layers=4, num_attention_heads=2,
                 intermediate_size=256, decoder_hidden_size=32, decoder_num_hidden_layers=1,
                 decoder_num_attention_heads=2, decoder_intermediate_size=128, norm_pix_loss=True),
    "vit-tiny": dict(image_size=28, patch_size=4, hidden_size=192, num_hidden_layers=12, num_attention_heads=3,
                     intermediate_size=768, decoder_hidden_size=128, decoder_num_hidden_layers=2,
                     decoder_num_attention_heads=4, decoder_intermediate_size=512, norm_pix_loss=True),
}
METHODS = {"mae": (0.0, 0.0), "m-mae": (1.0, 0.0), "mu-mae": (1.0, 0.01)}  # (magma_weight, uniformity_weight)


# ---- helpers ---------------------------------------------------------------------------------------------------
class Clock:
    """Seconds left of the run's time budget."""

    def __init__(self, budget: float) -> None:
        self.start, self.budget = time.perf_counter(), budget

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.start)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def is_oom(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def build_model(method: str, config: dict[str, Any], device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    magma_weight, uniformity_weight = METHODS[method]
    if method == "mae":  # the baseline is transformers' own MAE, which computes no MAGMA term at all
        model = ViTMAEForPreTraining(ViTMAEConfig(**config, attn_implementation="sdpa"))
    else:
        model = ViTMAEWithMAGMA(ViTMAEConfig(**config, attn_implementation="sdpa", magma_weight=magma_weight,
                                             uniformity_weight=uniformity_weight))
    return model.to(device).train()


def train_step_fn(model: torch.nn.Module, optimizer: torch.optim.Optimizer, device: torch.device, bf16: bool):
    def step(pixel_values: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model(pixel_values=pixel_values).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def make_optimizer(model: torch.nn.Module, device: torch.device) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=1.5e-4, betas=(0.9, 0.95), weight_decay=0.05, fused=True)


def time_steps(step, batches: list[torch.Tensor], warmup: int, steps: int, device: torch.device) -> float:
    """Seconds per step, after ``warmup`` steps."""
    for i in range(warmup):
        step(batches[i % len(batches)])
    synchronize(device)
    start = time.perf_counter()
    for i in range(steps):
        step(batches[i % len(batches)])
    synchronize(device)
    return (time.perf_counter() - start) / steps


def step_flops(method: str, config: dict[str, Any], batch: int, device: torch.device, bf16: bool) -> float:
    """FLOPs of one training step (forward + backward; the optimizer's elementwise work is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(method, config, device)
    pixel_values = torch.randn(batch, 3, config["image_size"], config["image_size"], device=device)
    counter = FlopCounterMode(display=False)
    with counter:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model(pixel_values=pixel_values).loss
        loss.backward()
    del model
    return float(counter.get_total_flops())


# ---- 1. model steps --------------------------------------------------------------------------------------------
def measure_model(method: str, config: dict[str, Any], batch: int, compiled: bool, device: torch.device,
                  settings: argparse.Namespace) -> dict[str, Any]:
    """One method at the largest batch that fits (halving from ``batch``); images/s and peak memory."""
    while batch >= 1:
        model = optimizer = batches = step = None
        try:
            reset_peak(device)
            model = build_model(method, config, device)
            optimizer = make_optimizer(model, device)
            if compiled:
                model = torch.compile(model, backend=settings.compile_backend)
            step = train_step_fn(model, optimizer, device, settings.bf16)
            size = config["image_size"]
            batches = [torch.randn(batch, 3, size, size, device=device) for _ in range(2)]
            start = time.perf_counter()
            step(batches[0])  # compiles, when compiled
            synchronize(device)
            first_step = time.perf_counter() - start
            seconds = time_steps(step, batches, settings.warmup, settings.steps, device)
            return {"method": method, "compiled": compiled, "batch": batch, "images_per_s": batch / seconds,
                    "step_ms": 1000 * seconds, "peak_memory_gib": peak_gib(device),
                    "first_step_s": first_step}
        except Exception as error:  # noqa: BLE001 - an OOM steps the batch down, anything else is reported
            if not is_oom(error):
                raise
            batch //= 2
        finally:
            del model, optimizer, batches, step
            reset_peak(device)
    raise RuntimeError(f"{method}: not even a batch of 1 fits")


def compiled_in_subprocess(methods: list[str], batch: int, timeout: float, settings: argparse.Namespace
                           ) -> list[dict[str, Any]]:
    """`measure_model(compiled=True)` for ``methods`` in order, in one fresh process (later compilations reuse
    the kernels of earlier ones) killed after ``timeout`` seconds; the methods it did not reach are skipped."""
    command = [sys.executable, __file__, "--_compiled", ",".join(methods), "--batch_size", str(batch),
               "--warmup", str(settings.warmup), "--steps", str(settings.steps),
               "--compile_backend", settings.compile_backend, "--bf16", str(int(settings.bf16))]
    if settings.smoke:
        command.append("--smoke")
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=max(timeout, 1))
        stdout, failure = result.stdout, (result.stderr.strip().splitlines() or ["failed"])[-1]
        failure = failure if result.returncode != 0 else None
    except subprocess.TimeoutExpired as expired:
        out = expired.stdout or ""
        stdout, failure = out.decode() if isinstance(out, bytes) else out, f"time budget ({timeout:.0f} s) spent"
    rows = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    done = {row["method"] for row in rows}
    rows += [{"method": m, "compiled": True, "skipped": failure or "not reached"} for m in methods if m not in done]
    return rows


def eager_section(device: torch.device, settings: argparse.Namespace, clock: Clock) -> dict[str, Any]:
    """The three methods eager, and the FLOPs of their steps."""
    config = SMOKE_MODEL if settings.smoke else VIT_B
    rows: list[dict[str, Any]] = []
    for method in METHODS:
        if clock.left() < 20:
            rows.append({"method": method, "compiled": False, "skipped": "time budget"})
            continue
        rows.append(measure_model(method, config, settings.batch_size, False, device, settings))
    flops = {row["method"]: step_flops(row["method"], config, row["batch"], device, settings.bf16) / row["batch"]
             for row in rows if "images_per_s" in row}
    return {"config": config, "rows": rows, "flops_per_image": flops}


def finish_model_section(section: dict[str, Any], settings: argparse.Namespace) -> None:
    """MFU of every measured row and MAGMA's overhead over MAE (same batch, same mode)."""
    rows, flops = section["rows"], section["flops_per_image"]
    for row in rows:
        if "images_per_s" in row and row["method"] in flops:
            row["tflops_per_image"] = flops[row["method"]] / 1e12
            row["mfu"] = flops[row["method"]] * row["images_per_s"] / (settings.peak_tflops * 1e12)
    overhead = {}
    for compiled in (False, True):
        by_method = {r["method"]: r for r in rows if r.get("compiled") == compiled and "images_per_s" in r}
        for method in ("m-mae", "mu-mae"):
            if "mae" in by_method and method in by_method and by_method[method]["batch"] == by_method["mae"]["batch"]:
                mae, other = by_method["mae"], by_method[method]
                key = f"{method} {'compiled' if compiled else 'eager'}"
                overhead[key] = {"time": other["step_ms"] / mae["step_ms"] - 1}
                if mae["peak_memory_gib"]:
                    overhead[key]["memory"] = other["peak_memory_gib"] / mae["peak_memory_gib"] - 1
    section["magma_overhead_over_mae"] = overhead


# ---- 2. the JPEG data path -------------------------------------------------------------------------------------
def _write_jpegs(args: tuple[str, int, int]) -> None:
    import numpy as np
    import PIL.Image

    folder, start, count = args
    rng = np.random.default_rng(start)
    for i in range(start, start + count):
        # ImageNet-typical sizes (mostly 500 x 375 / 375 x 500 and around), smooth content with some texture.
        width, height = (500, 375) if rng.random() < 0.6 else tuple(int(v) for v in rng.integers(250, 800, 2))
        if rng.random() < 0.3:
            width, height = height, width
        small = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
        image = PIL.Image.fromarray(small).resize((width, height), PIL.Image.BILINEAR)
        noise = rng.integers(-12, 13, (height, width, 3))
        array = np.clip(np.asarray(image, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
        PIL.Image.fromarray(array).save(os.path.join(folder, f"{i:05d}.jpg"), quality=90)


class FileDataset(torch.utils.data.Dataset):
    def __init__(self, paths: list[str]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": {"path": self.paths[index], "bytes": None}}


def jpeg_section(settings: argparse.Namespace, clock: Clock, model_images_per_s: float | None) -> dict[str, Any]:
    from multiprocessing import get_context

    from hf_magma.data.transforms import ImageCollator, ImageTransform

    count = 64 if settings.smoke else settings.jpegs
    size = 32 if settings.smoke else 224
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        chunk = max(count // settings.workers, 1)
        jobs = [(folder, i, min(chunk, count - i)) for i in range(0, count, chunk)]
        with get_context("fork").Pool(min(settings.workers, len(jobs))) as pool:
            pool.map(_write_jpegs, jobs)
        made = time.perf_counter() - start
        paths = sorted(str(p) for p in Path(folder).glob("*.jpg"))
        megabytes = sum(os.path.getsize(p) for p in paths) / 2**20
        collator = ImageCollator(ImageTransform(size, train=True), "image")
        loader = torch.utils.data.DataLoader(
            FileDataset(paths), batch_size=settings.data_batch_size, shuffle=True, num_workers=settings.workers,
            collate_fn=collator, pin_memory=torch.cuda.is_available(), drop_last=True, persistent_workers=True,
            prefetch_factor=4,
        )
        images, timed_from, timed_images = 0, None, 0
        deadline = time.perf_counter() + min(settings.data_seconds, max(clock.left() - settings.reserve, 5))
        for _ in range(3):
            for batch in loader:
                images += batch["pixel_values"].shape[0]
                if timed_from is None and images >= 2 * settings.data_batch_size:
                    timed_from, timed_images = time.perf_counter(), images  # workers started and warm
                if time.perf_counter() > deadline:
                    break
            if time.perf_counter() > deadline:
                break
        elapsed = time.perf_counter() - timed_from if timed_from else float("nan")
        rate = (images - timed_images) / elapsed if timed_from and elapsed > 0 else None
        del loader
    result = {"jpegs": count, "mean_file_kib": 1024 * megabytes / max(count, 1), "generation_s": made,
              "workers": settings.workers, "image_size": size, "images_per_s": rate}
    if rate and model_images_per_s:
        result["model_images_per_s"] = model_images_per_s
        result["data_over_model"] = rate / model_images_per_s
    return result


# ---- 3. the in-memory path -------------------------------------------------------------------------------------
def in_memory_section(device: torch.device, settings: argparse.Namespace, clock: Clock) -> list[dict[str, Any]]:
    count = 2048 if settings.smoke else 60_000
    generator = torch.Generator(device="cpu").manual_seed(0)
    data = torch.randint(0, 256, (count, 1, 28, 28), dtype=torch.uint8, generator=generator).to(device)
    augment = BatchImageTransform(28, (0.5,), (0.5,), train=True, num_channels=3).to(device)
    rows = []
    for name, config in SMALL_MODELS.items():
        if settings.smoke and name != "demo":
            continue
        for method in ("mae", "m-mae"):
            if clock.left() - settings.reserve < 10 and not settings.smoke:
                rows.append({"model": name, "method": method, "skipped": "time budget"})
                continue
            model = build_model(method, config, device)
            optimizer = make_optimizer(model, device)
            step = train_step_fn(model, optimizer, device, settings.bf16)
            batch = settings.small_batch_size
            order = torch.randperm(count, device=device)

            def fed_step(i: int, batch: int = batch, order: torch.Tensor = order, step=step) -> torch.Tensor:
                start = (i * batch) % (count - batch)
                pixels = data[order[start:start + batch]]
                rng = torch.Generator(device=device).manual_seed(i)
                return step(augment(pixels, rng))

            for i in range(settings.warmup):
                fed_step(i)
            synchronize(device)
            steps = settings.small_steps
            start = time.perf_counter()
            for i in range(steps):
                fed_step(settings.warmup + i)
            synchronize(device)
            rate = steps * batch / (time.perf_counter() - start)
            rows.append({"model": name, "method": method, "batch": batch, "images_per_s": rate,
                         "hours_for_100_epochs_of_60000": 100 * 60_000 / rate / 3600})
            del model, optimizer
    return rows


# ---- 4. the pretraining script under FSDP -----------------------------------------------------------------------
def fsdp_section(settings: argparse.Namespace, clock: Clock) -> dict[str, Any]:
    """`accelerate launch --config_file scripts/accelerate_configs/fsdp.yaml --num_processes 1
    scripts/run_mae_magma.py` for a few steps with --magma_gather on an image folder of synthetic JPEGs (ViT-B/16,
    bf16): did accelerate run FSDP, did every checkpoint and the final folder get full weights and `encoder/`, and
    does that encoder load as a plain ViT. On CPU (--smoke) accelerate falls back to DDP, which the row says."""
    from transformers import ViTModel

    steps, batch = (4, 4) if settings.smoke else (6, 64)
    with tempfile.TemporaryDirectory() as folder:
        for label, first in (("a", 0), ("b", 1000)):  # two classes, for the online probe
            os.makedirs(os.path.join(folder, "train", label))
            _write_jpegs((os.path.join(folder, "train", label), first, 2 * batch))
        output = os.path.join(folder, "run")
        command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                   str(ROOT / "scripts" / "accelerate_configs" / "fsdp.yaml"), "--num_processes", "1",
                   str(ROOT / "scripts" / "run_mae_magma.py"), "--train_dir", os.path.join(folder, "train"),
                   "--output_dir", output, "--per_device_train_batch_size", str(batch), "--max_steps", str(steps),
                   "--save_steps", str(steps // 2), "--magma_start_step", "0", "--magma_steps", str(steps),
                   "--magma_gather", "true", "--report_to", "none", "--disable_tqdm", "true", "--log_level", "info",
                   "--dataloader_num_workers", "2"]
        if settings.smoke:
            command += ["--use_cpu", "true", "--config_overrides",
                        ",".join(f"{k}={v}" for k, v in SMOKE_MODEL.items()
                                 if k not in ("norm_pix_loss", "mask_ratio"))]
        else:
            command += ["--bf16", "true"]
        start = time.perf_counter()
        try:
            run = subprocess.run(command, capture_output=True, text=True, cwd=ROOT,
                                 timeout=max(clock.left() - settings.reserve, 30))
        except subprocess.TimeoutExpired:
            return {"skipped": "time budget"}
        log = run.stdout + run.stderr
        result: dict[str, Any] = {"returncode": run.returncode, "wall_s": time.perf_counter() - start,
                                  "steps": steps, "batch": batch,
                                  "distributed_type": next((line.split("distributed type:")[1].split()[0]
                                                            for line in log.splitlines()
                                                            if "distributed type:" in line), None)}
        if run.returncode != 0:
            result["error"] = log[-3000:]
            return result
        folders = sorted(Path(output).glob("checkpoint-*")) + [Path(output)]
        result["weights_and_encoder_in"] = [p.name for p in folders if (p / "model.safetensors").is_file()
                                            and (p / "encoder" / "model.safetensors").is_file()]
        result["folders"] = [p.name for p in folders]
        try:
            encoder = ViTModel.from_pretrained(os.path.join(output, "encoder"))
            result["encoder_loads"] = all(torch.isfinite(p).all().item() for p in encoder.parameters())
        except (OSError, ValueError) as error:
            result["encoder_loads"] = f"{type(error).__name__}: {error}"
    return result


# ---- report ----------------------------------------------------------------------------------------------------
def machine(device: torch.device) -> dict[str, Any]:
    info = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "torch": torch.__version__, "transformers": transformers.__version__, "cuda": torch.version.cuda,
            "python": platform.python_version(), "cpus": os.cpu_count()}
    if device.type == "cuda":
        info["memory_gib"] = torch.cuda.get_device_properties(device).total_memory / 2**30
    return info


def table(result: dict[str, Any]) -> str:
    lines = [f"# {result['machine']['device']} | torch {result['machine']['torch']} | transformers "
             f"{result['machine']['transformers']} | {result['total_s']:.0f} s",
             "", "| method | mode | batch | images/s | step ms | peak GiB | TFLOP/image | MFU |",
             "|---|---|---|---|---|---|---|---|"]
    for row in result["model"]["rows"]:
        mode = "compiled" if row.get("compiled") else "eager"
        if "images_per_s" not in row:
            lines.append(f"| {row['method']} | {mode} | {row.get('skipped') or row.get('error')} | | | | | |")
            continue
        peak = f"{row['peak_memory_gib']:.1f}" if row.get("peak_memory_gib") is not None else "-"
        mfu = f"{100 * row['mfu']:.1f} %" if "mfu" in row else "-"
        flops = f"{row['tflops_per_image']:.4f}" if "tflops_per_image" in row else "-"
        lines.append(f"| {row['method']} | {mode} | {row['batch']} | {row['images_per_s']:,.0f} | "
                     f"{row['step_ms']:.1f} | {peak} | {flops} | {mfu} |")
    for key, value in result["model"]["magma_overhead_over_mae"].items():
        memory = f", memory {100 * value['memory']:+.1f} %" if "memory" in value else ""
        lines.append(f"\nMAGMA over MAE ({key}): step time {100 * value['time']:+.1f} %{memory}")
    data = result.get("jpeg_data_path", {})
    if data.get("images_per_s"):
        ratio = f", {data['data_over_model']:.2f} x the model's best" if "data_over_model" in data else ""
        lines.append(f"\nJPEG data path ({data['workers']} workers, {data['jpegs']} files of "
                     f"{data['mean_file_kib']:.0f} KiB on average, {data['image_size']} px): "
                     f"{data['images_per_s']:,.0f} images/s{ratio}")
    fsdp = result.get("fsdp", {})
    if "returncode" in fsdp:
        checked = ("ran" if fsdp["returncode"] == 0 else f"failed (exit {fsdp['returncode']})")
        if fsdp["returncode"] == 0:
            checked += (f"; full weights and encoder/ in {len(fsdp['weights_and_encoder_in'])} of "
                        f"{len(fsdp['folders'])} folders; encoder loads as a ViT: {fsdp['encoder_loads']}")
        lines.append(f"\nPretraining script under scripts/accelerate_configs/fsdp.yaml ({fsdp['steps']} steps of "
                     f"{fsdp['batch']}, accelerate's distributed type {fsdp['distributed_type']}): {checked}")
    lines += ["", "| in-memory model | method | batch | images/s | 100 epochs x 60,000 |", "|---|---|---|---|---|"]
    for row in result.get("in_memory", []):
        if "images_per_s" in row:
            lines.append(f"| {row['model']} | {row['method']} | {row['batch']} | {row['images_per_s']:,.0f} | "
                         f"{60 * row['hours_for_100_epochs_of_60000']:.1f} min |")
        else:
            lines.append(f"| {row['model']} | {row['method']} | {row['skipped']} | | |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="bench_gpu.json")
    parser.add_argument("--smoke", action="store_true", help="tiny settings on CPU (the test suite runs this)")
    parser.add_argument("--time_budget", type=float, default=270.0, help="seconds for all measurements")
    parser.add_argument("--reserve", type=float, default=15.0, help="seconds kept for what follows a section")
    parser.add_argument("--batch_size", type=int, default=512, help="ViT-B/16 batch to try first")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--peak_tflops", type=float, default=790.0, help="the bf16 matmul rate MFU is against")
    parser.add_argument("--bf16", type=int, default=1)
    parser.add_argument("--compile_backend", default="inductor")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--jpegs", type=int, default=3000)
    parser.add_argument("--data_batch_size", type=int, default=256)
    parser.add_argument("--data_seconds", type=float, default=25.0)
    parser.add_argument("--small_batch_size", type=int, default=256)
    parser.add_argument("--small_steps", type=int, default=50)
    parser.add_argument("--_compiled", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.batch_size, args.warmup, args.steps = min(args.batch_size, 8), 1, 2
        args.workers, args.data_batch_size, args.data_seconds = min(args.workers, 2), 16, 5.0
        args.small_batch_size, args.small_steps = 32, 2
        args.compile_backend = "eager" if args.compile_backend == "inductor" else args.compile_backend
        args.bf16 = 0 if args.bf16 == 1 and not torch.cuda.is_available() else args.bf16
    args.bf16 = bool(args.bf16)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    settings = parse_args(argv)
    clock = Clock(settings.time_budget)
    device = torch.device("cuda" if torch.cuda.is_available() and not settings.smoke else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if settings._compiled:  # compiled measurements, in their own process (see compiled_in_subprocess)
        config = SMOKE_MODEL if settings.smoke else VIT_B
        for method in settings._compiled.split(","):
            print(json.dumps(measure_model(method, config, settings.batch_size, True, device, settings)), flush=True)
        return {}
    result: dict[str, Any] = {"machine": machine(device), "settings": {k: v for k, v in vars(settings).items()
                                                                     if not k.startswith("_")}}
    result["model"] = section = eager_section(device, settings, clock)
    eager_best = max((r["images_per_s"] for r in section["rows"] if "images_per_s" in r), default=None)
    result["jpeg_data_path"] = (jpeg_section(settings, clock, eager_best) if clock.left() > settings.reserve + 10
                                or settings.smoke else {"skipped": "time budget"})
    result["in_memory"] = in_memory_section(device, settings, clock)
    result["fsdp"] = (fsdp_section(settings, clock) if clock.left() > settings.reserve + 60 or settings.smoke
                      else {"skipped": "time budget"})
    # Compilation last: it takes what time is left (M-MAE first, then the MAE baseline, then MU-MAE).
    batch = min((r["batch"] for r in section["rows"] if "images_per_s" in r), default=settings.batch_size)
    methods = ["m-mae"] if settings.smoke else ["m-mae", "mae", "mu-mae"]
    section["rows"] += compiled_in_subprocess(methods, batch, clock.left() - 5, settings)
    finish_model_section(section, settings)
    best = max((r["images_per_s"] for r in section["rows"] if "images_per_s" in r), default=None)
    data = result["jpeg_data_path"]
    if best and data.get("images_per_s"):
        data["model_images_per_s"], data["data_over_model"] = best, data["images_per_s"] / best
    result["total_s"] = time.perf_counter() - clock.start
    Path(settings.output).parent.mkdir(parents=True, exist_ok=True)
    Path(settings.output).write_text(json.dumps(result, indent=2))
    print(table(result))
    print(f"\nwritten to {settings.output}")
    return result


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
