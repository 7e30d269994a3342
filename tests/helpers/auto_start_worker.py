"""Run by torchrun (two CPU processes) for tests/training/test_auto_start.py: the processes pretrain together with
``--magma_start_epoch auto``, and each writes to RECORD_DIR/rank<N>.json the step its detector switched the term on
(``"decided"``), the weight of every training step (``"weights"``) and the MAGMA term of its own batches before any
reduction over processes (``"local_terms"``).

    torchrun --standalone --nproc_per_node 2 -m tests.helpers.auto_start_worker RECORD_DIR [run_mae_magma.py options]
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from hf_magma.cli import run_mae_magma
from hf_magma.training.trainer import MAGMATrainer
from hf_magma.utils.distributed import close_process_group


def main(record_dir: str, argv: list[str]) -> None:
    weights: list[float] = []
    local_terms: list[float] = []
    trainers: list[MAGMATrainer] = []
    accumulate = MAGMATrainer._accumulate

    def recording(self, phase, values, **kwargs):
        if phase == "train" and "magma_loss" in values:
            if not trainers:
                trainers.append(self)
            weights.append(float(values["magma_weight"]))
            local_terms.append(float(values["magma_loss"]))
        return accumulate(self, phase, values, **kwargs)

    MAGMATrainer._accumulate = recording
    run_mae_magma.main(*run_mae_magma.make_parser().parse_args_and_config(argv))
    record = {"decided": trainers[0].auto_start.start_step, "weights": weights, "local_terms": local_terms}
    Path(record_dir, f"rank{os.environ['RANK']}.json").write_text(json.dumps(record))
    close_process_group()  # as the program's entry point does: a lingering gloo thread can abort the exit


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
