#!/usr/bin/env bash
# The README's first command: set up, pretrain a small M-MAE on the offline Fashion-MNIST (CPU recipe),
# evaluate it with the paper's protocol (linear probe + k-NN), and write the checkpoint, model card and figures.
set -euo pipefail
cd "$(dirname "$0")/.."

# Fashion-MNIST from Debian's package (about 30 MB of the original IDX files); with a network the same data is
# `--dataset_name zalando-datasets/fashion_mnist` on the Hub.
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    SUDO=$([ "$(id -u)" -eq 0 ] || echo sudo)
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist
fi

# The CPU build of torch first, so that nothing pulls a CUDA build; then the package with the figures extra.
python3 -m venv .venv
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e ".[viz]"

OUT=outputs/m-mae-fashion-mnist
.venv/bin/python scripts/run_mae_magma.py --config recipes/fashion_mnist_cpu.yaml --output_dir "$OUT"
.venv/bin/python scripts/run_eval.py --model_name_or_path "$OUT" --output_dir "$OUT/eval" --figures pacmap

echo
echo "Checkpoint:  $OUT (model.safetensors, config.json, preprocessor_config.json)"
echo "Model card:  $OUT/README.md"
echo "Figures:     $OUT/figures/"
echo "Evaluation:  $OUT/eval/eval_results.json"
