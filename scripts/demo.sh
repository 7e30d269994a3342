#!/usr/bin/env bash
# The README's first command: set up, pretrain a small MAE and M-MAE on the offline Fashion-MNIST with the same
# seed, data and budget, evaluate both with the paper's protocol beside the raw-pixel floor, draw their PaCMAP,
# training curves and reconstructions side by side, and print one table. The full logs go to outputs/demo/logs/.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=outputs/demo
if [ -e "$OUT" ]; then
    echo "$OUT exists (an earlier demo): move it away or delete it to run the demo again" >&2
    exit 1
fi
mkdir -p "$OUT/logs"

echo "1/4  Setting up: Fashion-MNIST (Debian's dataset-fashion-mnist), .venv with the CPU build of torch and hf-magma"
# Fashion-MNIST from Debian's package (about 30 MB of the original IDX files); with a network the same data is
# `--dataset_name zalando-datasets/fashion_mnist` on the Hub.
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    SUDO=$([ "$(id -u)" -eq 0 ] || echo sudo)
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist >"$OUT/logs/setup.log" 2>&1
fi
# The CPU build of torch first, so that nothing pulls a CUDA build; then the package with the figures extra.
python3 -m venv .venv
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e ".[viz]"

echo "2/4  Pretraining MAE and M-MAE side by side (3 epochs, 705 steps each), then the paper's evaluation of each"
echo "     and of the raw pixels (recipes/reproduce_fashion_mnist_demo.yaml)"
OMP_NUM_THREADS=1 .venv/bin/python scripts/reproduce.py --config recipes/reproduce_fashion_mnist_demo.yaml \
    --results_dir "$OUT/results" --output_dir "$OUT/runs" --log_dir "$OUT/logs"

echo "3/4  Drawing both encoders' PaCMAP (with the Davies-Bouldin index), training curves and reconstructions side by side"
LINEAR=$(.venv/bin/python -c "
import json; print(*(json.load(open(f'$OUT/results/{m}_seed0.json'))['linear_top1'] for m in ('mae', 'm-mae')))")
if ! .venv/bin/python scripts/visualize.py --model_name_or_path "$OUT/runs/mae/seed0" "$OUT/runs/m-mae/seed0" \
    --names MAE M-MAE --linear_accuracy $LINEAR --figures pacmap,curves,reconstructions --num_images 8 --split test \
    --output_dir "$OUT/figures" --dpi 80 >"$OUT/logs/visualize.log" 2>&1; then
    tail -n 20 "$OUT/logs/visualize.log" >&2
    exit 1
fi

echo "4/4  MAE vs M-MAE on the Fashion-MNIST test set (same seed, data and 3-epoch budget), and the raw-pixel floor:"
echo
.venv/bin/python scripts/compare_runs.py --results_dir "$OUT/results" --pacmap_scores "$OUT/figures/pacmap.json"
echo
echo "Checkpoints:  $OUT/runs/mae/seed0, $OUT/runs/m-mae/seed0 (each with its model card, README.md, and encoder/)"
echo "Results:      $OUT/results (one JSON per run, pixels.json, summary.md)"
echo "Figures:      $OUT/figures/pacmap.png, $OUT/figures/training_curves.png, $OUT/figures/reconstructions.png"
echo "Logs:         $OUT/logs ($(cd "$OUT/logs" && ls | tr '\n' ' '))"
