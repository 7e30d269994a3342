"""Time the frozen-feature protocol (100-epoch linear probe + k-NN) at CIFAR-100 size with ViT-Tiny width.

Random features stand in for cached encoder outputs: 50,000 x 192 train, 10,000 x 192 test, 100 classes. Side by
side, the same work done the usual ways: the probe fed by a torch ``DataLoader``, k-NN by scikit-learn, and (for
scale) the cost of re-running a ViT-Tiny encoder on every probe epoch, measured on a few batches and extrapolated.

    PYTHONPATH=src python benchmarks/bench_eval.py            # the full protocol (about a minute on 2 cores)
    PYTHONPATH=src python benchmarks/bench_eval.py --quick    # 10 epochs, fewer rows
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from hf_magma.data.labels import class_count
from hf_magma.evaluation import knn_accuracy, linear_probe


def dataloader_probe(train_x, train_y, *, epochs, batch_size=256, lr=0.1, momentum=0.9, milestones=(60, 80)):
    """The same probe written the common way: a shuffling DataLoader over a TensorDataset."""
    torch.manual_seed(0)
    head = nn.Linear(train_x.shape[1], class_count(train_y))
    optimizer = torch.optim.SGD(head.parameters(), lr=lr, momentum=momentum)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(milestones), gamma=0.1)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(train_x, train_y), batch_size=batch_size, shuffle=True
    )
    for _ in range(epochs):
        for x, y in loader:
            loss = F.cross_entropy(head(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()


def encoder_epoch_seconds(n_train: int, batches: int, batch_size: int = 256) -> float:
    """Seconds for one inference pass of a ViT-Tiny (12 x 192, 32 px, patch 4) over ``n_train`` images,
    extrapolated from ``batches`` measured batches."""
    from transformers import ViTConfig, ViTModel

    model = ViTModel(
        ViTConfig(hidden_size=192, num_hidden_layers=12, num_attention_heads=3, intermediate_size=768,
                  image_size=32, patch_size=4),
        add_pooling_layer=False,
    ).eval()
    images = torch.randn(batch_size, 3, 32, 32)
    with torch.inference_mode():
        model(pixel_values=images)  # warm-up
        start = time.perf_counter()
        for _ in range(batches):
            model(pixel_values=images)
        per_batch = (time.perf_counter() - start) / batches
    return per_batch * n_train / batch_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10 epochs and a tenth of the rows")
    parser.add_argument("--baseline_epochs", type=int, default=5, help="epochs timed for the DataLoader probe")
    parser.add_argument("--encoder_batches", type=int, default=2, help="ViT-Tiny batches timed (0 to skip)")
    parser.add_argument("--skip_sklearn", action="store_true")
    args = parser.parse_args()

    n_train, n_test, dim, classes, epochs = 50_000, 10_000, 192, 100, 100
    if args.quick:
        n_train, n_test, epochs = 5_000, 1_000, 10
    milestones = (int(epochs * 0.6), int(epochs * 0.8))
    g = torch.Generator().manual_seed(0)
    train_x, test_x = torch.randn(n_train, dim, generator=g), torch.randn(n_test, dim, generator=g)
    train_y = torch.randint(0, classes, (n_train,), generator=g)
    test_y = torch.randint(0, classes, (n_test,), generator=g)
    print(f"features: train {n_train} x {dim}, test {n_test} x {dim}, {classes} classes; torch threads "
          f"{torch.get_num_threads()}")

    start = time.perf_counter()
    probe = linear_probe(train_x, train_y, test_x, test_y, epochs=epochs, milestones=milestones)
    probe_s = time.perf_counter() - start
    start = time.perf_counter()
    knn = knn_accuracy(train_x, train_y, test_x, test_y, k=10)
    knn_s = time.perf_counter() - start
    total = probe_s + knn_s
    print(f"linear probe, {epochs} epochs : {probe_s:7.2f} s  (top-1 {probe['accuracy']:.4f}, chance {1 / classes})")
    print(f"k-NN, k=10, weighted       : {knn_s:7.2f} s  (top-1 {knn:.4f})")
    print(f"full protocol              : {total:7.2f} s  (goal < 60 s: {'met' if total < 60 else 'NOT met'})")

    if args.baseline_epochs > 0:
        threads = torch.get_num_threads()
        start = time.perf_counter()
        linear_probe(train_x, train_y, test_x, test_y, epochs=args.baseline_epochs, milestones=())
        ours_epoch = (time.perf_counter() - start) / args.baseline_epochs
        # The same probe with torch's default thread count (the library runs the probe on one thread).
        start = time.perf_counter()
        dataloader_probe(train_x, train_y, epochs=args.baseline_epochs)
        loader_epoch = (time.perf_counter() - start) / args.baseline_epochs
        torch.set_num_threads(1)
        try:
            start = time.perf_counter()
            dataloader_probe(train_x, train_y, epochs=args.baseline_epochs)
            loader_epoch_1 = (time.perf_counter() - start) / args.baseline_epochs
        finally:
            torch.set_num_threads(threads)
        for label, seconds in ((f"DataLoader probe, {threads} threads", loader_epoch),
                               ("DataLoader probe, 1 thread", loader_epoch_1)):
            print(f"{label:27s}: {seconds * epochs:7.2f} s  for {epochs} epochs, extrapolated from "
                  f"{args.baseline_epochs} ({seconds / ours_epoch:.1f}x ours, timed beside it)")
    if not args.skip_sklearn:
        from sklearn.neighbors import KNeighborsClassifier

        start = time.perf_counter()
        sk = KNeighborsClassifier(n_neighbors=10, weights=lambda d: 1.0 / (d + 1e-5), algorithm="brute")
        sk_acc = (sk.fit(train_x.numpy(), train_y.numpy()).predict(test_x.numpy()) == test_y.numpy()).mean()
        sk_s = time.perf_counter() - start
        print(f"scikit-learn k-NN (brute)  : {sk_s:7.2f} s  (top-1 {sk_acc:.4f}; {sk_s / knn_s:.1f}x ours)")
    if args.encoder_batches > 0:
        epoch_s = encoder_epoch_seconds(n_train, args.encoder_batches)
        print(f"ViT-Tiny pass over train   : {epoch_s:7.2f} s  per epoch, extrapolated from {args.encoder_batches} "
              f"batches of 256; re-running it for {epochs} probe epochs: {epoch_s * epochs / 3600:.1f} h")


if __name__ == "__main__":
    main()
