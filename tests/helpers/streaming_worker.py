"""Run by torchrun (two CPU processes) for tests/cli/test_run_mae_magma.py: the processes pretrain together on the
stream, and each writes to RECORD_DIR/rank<N>.json the paths of its shard of the training examples (``"shard"``)
and of the examples its training collator was given (``"trained"``, as many times as given).

    torchrun --standalone --nproc_per_node 2 -m tests.helpers.streaming_worker RECORD_DIR [run_mae_magma.py options]
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

from hf_magma.data.arguments import ImageDataArguments
from hf_magma.data.loading import load_image_datasets
from hf_magma.data.transforms import ImageCollator
from hf_magma.utils.distributed import close_process_group
from tests.helpers import ROOT

SCRIPT = ROOT / "scripts" / "run_mae_magma.py"


def main(record_dir: str, argv: list[str]) -> None:
    spec = importlib.util.spec_from_file_location("run_mae_magma", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    data_args, training_args, model_args = script.make_parser().parse_args_and_config(argv)
    splits = load_image_datasets(ImageDataArguments(train_dir=data_args.train_dir,
                                                    validation_dir=data_args.validation_dir, streaming=True),
                                 seed=training_args.seed)
    shard = [example["image"]["path"] for example in splits["train"]]
    given: list[str] = []
    collate = ImageCollator.__call__

    def recording(self, examples):  # DataLoader workers are off: every batch is collated in this process
        examples = list(examples)
        given.extend(example[self.image_column]["path"] for example in examples)
        return collate(self, examples)

    ImageCollator.__call__ = recording
    script.main(data_args, training_args, model_args)
    Path(record_dir, f"rank{os.environ['RANK']}.json").write_text(json.dumps({"shard": shard, "trained": given}))
    close_process_group()  # as the program's entry point does: a lingering gloo thread can abort the exit


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
