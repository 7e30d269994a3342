"""Cost of MAGMA: training-step time and peak memory of `ViTMAEWithMAGMA` against `ViTMAEForPreTraining`.

Both models share weights, batch and masking noise; their steps (forward, backward, AdamW step) are measured
alternately in one process, so drifts in machine load hit both alike; a second plain model, identical to the
first, measures the noise floor of the machine (the ratio two identical models show). Prints the median step times
and their ratio, and the peak-memory ratio: `torch.cuda.max_memory_allocated` on a GPU; on a CPU, where PyTorch keeps
no allocator statistics, the bytes held at the peak of a step (parameters, gradients, AdamW state and the
tensors autograd saves for backward, counted once per storage).

    python benchmarks/bench_magma_overhead.py                      # ViT-Tiny sized, 32 px, batch 256
    python benchmarks/bench_magma_overhead.py --device cuda --image_size 224 --patch_size 16 --hidden_size 768 ...
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from transformers import ViTMAEConfig, ViTMAEForPreTraining

from hf_magma import ViTMAEWithMAGMA


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch_size", type=int, default=256)
    p.add_argument("--image_size", type=int, default=32)
    p.add_argument("--patch_size", type=int, default=4)
    p.add_argument("--hidden_size", type=int, default=192)
    p.add_argument("--num_hidden_layers", type=int, default=12)
    p.add_argument("--num_attention_heads", type=int, default=3)
    p.add_argument("--decoder_hidden_size", type=int, default=192)
    p.add_argument("--decoder_num_hidden_layers", type=int, default=4)
    p.add_argument("--decoder_num_attention_heads", type=int, default=3)
    p.add_argument("--steps", type=int, default=15, help="measured steps per model (after warm-up)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32", help="autocast dtype")
    p.add_argument("--no_control", dest="control", action="store_false",
                   help="skip the second plain model that measures the machine's noise floor")
    p.add_argument("--uniformity_weight", type=float, default=0.0, help=">0 measures MU-MAE instead of M-MAE")
    return p.parse_args()


def build_config(a: argparse.Namespace) -> ViTMAEConfig:
    return ViTMAEConfig(
        image_size=a.image_size,
        patch_size=a.patch_size,
        hidden_size=a.hidden_size,
        num_hidden_layers=a.num_hidden_layers,
        num_attention_heads=a.num_attention_heads,
        intermediate_size=4 * a.hidden_size,
        decoder_hidden_size=a.decoder_hidden_size,
        decoder_num_hidden_layers=a.decoder_num_hidden_layers,
        decoder_num_attention_heads=a.decoder_num_attention_heads,
        decoder_intermediate_size=4 * a.decoder_hidden_size,
        mask_ratio=0.75,
        norm_pix_loss=True,
    )


class SavedTensorMeter:
    """Bytes of the distinct storages autograd saves for backward during a forward pass."""

    def __init__(self) -> None:
        self.storages: dict[int, int] = {}

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        self.storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    @property
    def nbytes(self) -> int:
        return sum(self.storages.values())


def state_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    total = sum(p.numel() * p.element_size() * 2 for p in model.parameters())  # weights + gradients
    for state in optimizer.state.values():
        total += sum(v.numel() * v.element_size() for v in state.values() if isinstance(v, torch.Tensor))
    return total


def step(model, optimizer, pixels, noise, device, dtype) -> tuple[float, int]:
    """One training step; returns (seconds, peak bytes)."""
    meter = SavedTensorMeter()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        if device.type == "cpu":
            with torch.autograd.graph.saved_tensors_hooks(meter.pack, lambda t: t):
                loss = model(pixels, noise=noise).loss
        else:
            loss = model(pixels, noise=noise).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else state_bytes(model, optimizer) + meter.nbytes
    return elapsed, peak


def main() -> None:
    a = parse_args()
    device = torch.device(a.device)
    dtype = getattr(torch, a.dtype)
    torch.manual_seed(0)
    magma = ViTMAEWithMAGMA(build_config(a)).to(device)
    magma.config.uniformity_weight = a.uniformity_weight
    plain = ViTMAEForPreTraining(build_config(a)).to(device)
    plain.load_state_dict(magma.state_dict())
    models = {"ViTMAEForPreTraining": plain, "ViTMAEWithMAGMA": magma}
    if a.control:
        # A second, identical plain model: its ratio to the first is the noise floor of this machine.
        twin = ViTMAEForPreTraining(build_config(a)).to(device)
        twin.load_state_dict(magma.state_dict())
        models["ViTMAEForPreTraining (twin)"] = twin
    optimizers = {
        name: torch.optim.AdamW(m.parameters(), lr=1.5e-4, betas=(0.9, 0.95), weight_decay=0.05)
        for name, m in models.items()
    }
    g = torch.Generator().manual_seed(0)
    pixels = torch.randn(a.batch_size, 3, a.image_size, a.image_size, generator=g).to(device)
    noise = torch.rand(a.batch_size, (a.image_size // a.patch_size) ** 2, generator=g).to(device)

    times: dict[str, list[float]] = {name: [] for name in models}
    peaks: dict[str, list[int]] = {name: [] for name in models}
    order = list(models)
    for i in range(a.warmup + a.steps):
        for name in order[i % len(order):] + order[: i % len(order)]:  # rotate which model goes first
            seconds, peak = step(models[name], optimizers[name], pixels, noise, device, dtype)
            if i >= a.warmup:
                times[name].append(seconds)
                peaks[name].append(peak)

    params = sum(p.numel() for p in plain.parameters())
    device_name = (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else platform.processor() or platform.machine())
    print(f"device: {device} ({device_name}), "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, autocast {a.dtype}")
    print(f"model: {a.num_hidden_layers} x {a.hidden_size} encoder, {a.decoder_num_hidden_layers} x "
          f"{a.decoder_hidden_size} decoder, {params / 1e6:.2f}M parameters, {a.image_size}px / patch {a.patch_size}, "
          f"batch {a.batch_size}, {a.steps} measured steps each after {a.warmup} warm-up, "
          f"uniformity_weight {a.uniformity_weight}")
    memory_kind = ("torch.cuda.max_memory_allocated" if device.type == "cuda"
                   else "params+grads+AdamW state+saved tensors")
    for name in models:
        print(f"{name:28s} median step {statistics.median(times[name]) * 1000:9.1f} ms   "
              f"peak memory {max(peaks[name]) / 2**20:9.1f} MiB ({memory_kind})")
    time_ratio = statistics.median(times["ViTMAEWithMAGMA"]) / statistics.median(times["ViTMAEForPreTraining"])
    memory_ratio = max(peaks["ViTMAEWithMAGMA"]) / max(peaks["ViTMAEForPreTraining"])
    print(f"step-time ratio (MAGMA / plain): {time_ratio:.4f}  ({(time_ratio - 1) * 100:+.2f}%)")
    print(f"peak-memory ratio (MAGMA / plain): {memory_ratio:.4f}  ({(memory_ratio - 1) * 100:+.2f}%)")
    if a.control:
        twin_ratio = statistics.median(times["ViTMAEForPreTraining (twin)"]) / statistics.median(
            times["ViTMAEForPreTraining"]
        )
        print(f"noise floor, step-time ratio of two identical plain models: {twin_ratio:.4f}  "
              f"({(twin_ratio - 1) * 100:+.2f}%)")


if __name__ == "__main__":
    main()
