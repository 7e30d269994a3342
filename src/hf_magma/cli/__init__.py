"""The programs, one module each (docstring with examples, ``make_parser``, ``main``, ``entry_point``), installed as
console commands; ``scripts/<name>.py`` runs the same module:

| module | command | what |
|---|---|---|
| `run_mae_magma` | `hf-magma-pretrain` | pretrain an MAE / M-MAE / U-MAE / MU-MAE |
| `run_ssl_magma` | `hf-magma-pretrain-ssl` | pretrain M-SimCLR / M-VICReg |
| `run_eval` | `hf-magma-eval` | the paper's evaluation of a checkpoint (k-NN, linear probe, fine-tuning) |
| `reproduce` | `hf-magma-reproduce` | the paper's comparison over methods and seeds, one JSON per cell |
| `visualize` | `hf-magma-visualize` | the paper's figures for one or several checkpoints side by side |
| `compare_runs` | `hf-magma-compare` | one table of a results folder (the demo's last step) |

`parser` holds what they share (`MAGMAArgumentParser`: `HfArgumentParser` with a YAML ``--config``), `grid_results`
the reproduction grid's records read back. The top layer: it may import every other package; none imports it.
"""
