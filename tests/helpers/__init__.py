"""What the tests share beyond fixtures: the repository's root, tiny model configs (`tiny`), the localhost Hub server
(`hub_server`) and the programs run in subprocesses (`kill_worker`, `streaming_worker`,
`distributed_gather_worker`, `lock_worker`, started as ``python -m tests.helpers.<name>`` from the repository's
root)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
