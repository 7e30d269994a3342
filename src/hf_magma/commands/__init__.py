"""The command-line programs: each module's `main` and `make_parser` back a `scripts/<name>.py` file and a console
command installed with the package (`entry_point`); the run logic is in `hf_magma.cli`:

| script | command |
|---|---|
| `scripts/run_mae_magma.py` | `hf-magma-pretrain` |
| `scripts/run_ssl_magma.py` | `hf-magma-pretrain-ssl` |
| `scripts/run_eval.py` | `hf-magma-eval` |
| `scripts/reproduce.py` | `hf-magma-reproduce` |
| `scripts/visualize.py` | `hf-magma-visualize` |
"""
