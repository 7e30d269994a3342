"""Reproduce the paper's MAE / M-MAE / U-MAE / MU-MAE comparison with one recipe over seeds: pretrain each cell,
evaluate it (linear probe and k-NN on the train/test splits), write one JSON per (method, seed) and summary.md.

A cell whose JSON exists is skipped, so a grid can be filled over several sittings; a cell made with other
settings is refused rather than mixed into the table.

Installed as the `hf-magma-reproduce` command; `python scripts/reproduce.py` and `python -m hf_magma.cli.reproduce`
are the same program.

Examples:

    # the Fashion-MNIST grid on CPU (4 methods x 3 seeds); finished cells are skipped
    python scripts/reproduce.py --config recipes/reproduce_fashion_mnist.yaml

    # one cell
    python scripts/reproduce.py --config recipes/reproduce_fashion_mnist.yaml --methods m-mae --seeds 0

    # the paper's CIFAR-100 ViT-Tiny setting on a GPU machine with a network
    python scripts/reproduce.py --config recipes/reproduce_cifar100_gpu.yaml
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import logging
import os
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import TrainingArguments, ViTMAEConfig

from ..data.arguments import ImageDataArguments
from ..evaluation import EvaluationArguments
from ..models.arguments import MAGMAModelArguments, _load_config, load_model_and_image_processor
from ..records.logged_metrics import LOGGED_METRICS
from ..records.trainer_state import load_log_history
from ..training.training_args import MAGMATrainingArguments
from ..utils.checks import check_fractions, check_number
from .grid_jobs import Job, Progress, run_jobs
from .grid_results import METHODS, PIXELS_FILE, write_summary
from .grid_settings import cell_settings, evaluation_settings, method_training_args
from .grid_settings import differences as differences_of
from .parser import MAGMAArgumentParser, run_program
from .provenance import git_commit, machine_info
from .run_eval import run_evaluation, run_pixel_evaluation
from .run_mae_magma import prepare_run, pretrain
from .sweep import run_sweep

logger = logging.getLogger(__name__)

@dataclass
class ReproduceArguments:
    """Which cells of the grid to run, where to write them, and the evaluation protocol (the paper's by default).

    The recipe's ``magma_weight`` (lambda) and ``uniformity_weight`` (mu) are the values of the methods that use
    the term: ``mae`` turns both off, ``m-mae`` keeps lambda only, ``u-mae`` mu only, ``mu-mae`` both.
    """

    methods: list[str] = field(
        default_factory=lambda: list(METHODS), metadata={"help": f"Methods to run, of {list(METHODS)}."}
    )
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "Seeds to run."})
    results_dir: str = field(
        default="results/fashion_mnist",
        metadata={"help": "Where the cell JSONs and summary.md go (checkpoints go under --output_dir)."},
    )
    knn_k: int = field(default=10, metadata={"help": "Neighbours of the k-NN classifier."})
    linear_epochs: int = field(default=100, metadata={"help": "Epochs of the linear probe."})
    pooling: str = field(default="cls", metadata={"help": "Features: `cls` (after the final LayerNorm) or `mean`."})
    eval_batch_size: int = field(default=256, metadata={"help": "Images per feature-extraction batch."})
    label_fractions: list[float] = field(
        default_factory=lambda: [1.0],
        metadata={"help": "Fractions of the train labels for the linear probe, e.g. 0.01 0.1 1 "
                  "(the paper's Table 3)."},
    )
    pixels: bool = field(
        default=False,
        metadata={"help": "Also score the normalised pixels with the same protocol (the model-free floor, "
                  "pixels.json, a row of summary.md)."},
    )
    processes: int = field(
        default=1,
        metadata={"help": "Cells run at once, each in its own process (with --num_threads torch threads each)."},
    )
    log_dir: str | None = field(
        default=None,
        metadata={"help": "Where each job's full log goes when jobs run in their own processes (--processes > 1): "
                  "<log_dir>/<method>_seed<seed>.log and pixels.log; the terminal shows one line per step of each "
                  "job. Default: <output_dir>/logs."},
    )
    num_threads: int | None = field(
        default=None,
        metadata={"help": "torch's CPU threads (default: torch's choice). On a small shared CPU, 1 thread is "
                  "steadier: small matrix products stall waiting for busy cores."},
    )
    sweep: list[str] = field(
        default_factory=list,
        metadata={"help": "Settings to sweep, each `option=v1,v2,...` (any option of this command, e.g. "
                  "magma_weight=0.01,0.1,1,10 magma_start_epoch=0,2,auto, or a ViTMAEConfig attribute edited in "
                  "--config_overrides, e.g. decoder_hidden_size=32,64); options that change together are joined "
                  "with `:` (magma_reference_layers:magma_target_layer=1:2,2:3), list values with `+` "
                  "(label_fractions=0.01+1). Each setting is a grid of --methods x --seeds with its JSONs in "
                  "<results_dir>/<setting>/ and its checkpoints in <output_dir>/<setting>/; <results_dir>/sweep.md "
                  "has one row per setting. Methods without the swept term are run once, in the recipe's setting; "
                  "settings of the evaluation alone (pooling, knn_k, ...) re-evaluate the recipe's checkpoints."},
    )
    sweep_mode: str = field(
        default="one_at_a_time",
        metadata={"help": "`one_at_a_time`: the recipe, then each swept value alone around it (the paper's Table "
                  "4); `grid`: every combination of the swept values."},
    )

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"--methods must be among {list(METHODS)}, got {self.methods}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"--seeds must be distinct integers, got {self.seeds}")
        for name in ("knn_k", "linear_epochs", "eval_batch_size"):  # the grid reports both k-NN and the probe
            check_number(f"--{name}", getattr(self, name), sign="positive", integer=True)
        check_fractions("--label_fractions", self.label_fractions)
        check_number("--processes", self.processes, sign="positive", integer=True)
        if self.num_threads is not None:
            check_number("--num_threads", self.num_threads, sign="positive", integer=True)
        if self.sweep_mode not in ("one_at_a_time", "grid"):
            raise ValueError(f"--sweep_mode must be `one_at_a_time` or `grid`, got {self.sweep_mode!r}")


def training_curve(output_dir: str | os.PathLike) -> list[dict[str, float]]:
    """The logged training terms per logging step, from the run's ``trainer_state.json`` (empty without one)."""
    try:
        history = load_log_history(output_dir)
    except FileNotFoundError:
        return []
    keys = ("step", "epoch", "loss", *LOGGED_METRICS)
    return [{k: entry[k] for k in keys if k in entry} for entry in history if "reconstruction_loss" in entry]


def cell_path(results_dir: str | os.PathLike, method: str, seed: int) -> Path:
    return Path(results_dir) / f"{method}_seed{seed}.json"


def run_cell(
    method: str,
    seed: int,
    data_args: ImageDataArguments,
    training_args: MAGMATrainingArguments,
    model_args: MAGMAModelArguments,
    reproduce_args: ReproduceArguments,
    *,
    command: str,
    progress: Progress | None = None,
    pretrained_cell: str | None = None,
) -> dict[str, Any]:
    """Pretrain one (method, seed) cell with `pretrain`, evaluate it with `run_evaluation` (k-NN and linear probe
    on the train/test splits), write its JSON under ``results_dir`` and return the record.

    With ``pretrained_cell`` (the JSON of a finished cell with the same pretraining) its checkpoint is evaluated
    instead, and its pretraining record (times, losses, curve, MAGMA window) copied: a setting of the evaluation
    alone."""
    args = method_training_args(training_args, method, seed)
    settings = cell_settings(data_args, args, model_args, reproduce_args)
    started = datetime.datetime.now(datetime.timezone.utc)

    begin = time.perf_counter()
    if pretrained_cell is not None:
        source = json.loads(Path(pretrained_cell).read_text())
        args = dataclasses.replace(args, output_dir=source["checkpoint"])
        metrics, num_parameters = {}, None
    else:
        resume = prepare_run(data_args, args, "hf_magma.cli.reproduce")
        model, image_processor = load_model_and_image_processor(model_args)
        num_parameters = sum(p.numel() for p in model.vit.parameters())
        metrics = pretrain(data_args, args, model, image_processor, resume=resume, tags=("mae", "magma", method),
                           callbacks=[progress.callback()] if progress is not None else ())
        del model
    pretrain_seconds = time.perf_counter() - begin

    if progress is not None:
        progress.stage("evaluating: features, k-NN, linear probe")
    begin = time.perf_counter()
    eval_args = EvaluationArguments(
        model_name_or_path=args.output_dir,
        pooling=reproduce_args.pooling,
        batch_size=reproduce_args.eval_batch_size,
        knn_k=reproduce_args.knn_k,
        linear_epochs=reproduce_args.linear_epochs,
        label_fractions=list(reproduce_args.label_fractions),
    )
    eval_training_args = TrainingArguments(
        output_dir=os.path.join(args.output_dir, "eval"), seed=seed, report_to="none", use_cpu=args.use_cpu,
        disable_tqdm=args.disable_tqdm,
    )
    results = run_evaluation(eval_args, data_args, eval_training_args)
    eval_seconds = time.perf_counter() - begin

    curve = training_curve(args.output_dir)
    window = {key: metrics[f"magma_{key}"] for key in ("start_step", "end_step", "decided_at_step")
              if f"magma_{key}" in metrics}
    if args.magma_weight > 0 and not window and pretrained_cell is None:
        window = {"start_step": None, "end_step": None}  # the term never came on
    record = {
        "method": method,
        "seed": seed,
        "linear_top1": results.get("linear_accuracy"),
        "knn_top1": results.get("knn_accuracy"),
        "results": results,
        "final_losses": {
            "train": curve[-1] if curve else None,
            "eval": {k: v for k, v in metrics.items() if k.startswith("eval_") and k.endswith("loss")},
        },
        "pretrain_seconds": round(pretrain_seconds, 1),
        "eval_seconds": round(eval_seconds, 1),
        "train_runtime": metrics.get("train_runtime"),
        "train_steps": curve[-1]["step"] if curve else None,
        "encoder_parameters": num_parameters,
        "settings": settings,
        "command": command,
        "git_commit": git_commit(),
        "machine": machine_info(),
        "date": started.isoformat(timespec="seconds"),
        "checkpoint": args.output_dir,
        "magma_window": window or None,
        "training_curve": curve,
    }
    if pretrained_cell is not None:
        record.update({key: source.get(key) for key in ("final_losses", "pretrain_seconds", "train_runtime",
                                                        "train_steps", "encoder_parameters", "magma_window")})
        record["pretrained_cell"] = str(pretrained_cell)
    path = cell_path(reproduce_args.results_dir, method, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    logger.info("%s seed %d: linear %.4f, k-NN %.4f -> %s", method, seed, record["linear_top1"] or float("nan"),
                record["knn_top1"] or float("nan"), path)
    return record


def plan_grid(
    reproduce_args: ReproduceArguments,
    data_args: ImageDataArguments,
    training_args: MAGMATrainingArguments,
    model_args: MAGMAModelArguments,
    *,
    command: str,
    pretrained_from: str | os.PathLike | None = None,
) -> tuple[dict[tuple[str, int], dict[str, Any]], list[Job]]:
    """The selected (method, seed) cells: the records of those whose JSON exists, and a `Job` for each of the
    others (and for the pixel floor when asked and missing). With ``pretrained_from`` (a results folder of the same
    pretraining) the jobs evaluate that folder's checkpoints instead of pretraining.

    Raises:
        ValueError: a finished cell's recorded settings differ from the current ones (use another
            ``results_dir``).
    """
    cells: dict[tuple[str, int], dict[str, Any]] = {}
    pending: list[tuple[str, int]] = []
    for method in reproduce_args.methods:
        for seed in reproduce_args.seeds:
            path = cell_path(reproduce_args.results_dir, method, seed)
            if path.is_file():
                record = json.loads(path.read_text())
                expected = json.loads(json.dumps(
                    cell_settings(data_args, method_training_args(training_args, method, seed), model_args,
                                  reproduce_args)
                ))
                differences = differences_of(record["settings"], expected)
                if differences:
                    raise ValueError(
                        f"{path} was made with other settings ({'; '.join(differences)}); delete it or pass "
                        "another --results_dir"
                    )
                logger.info("%s seed %d is done (%s): skipped", method, seed, path)
                cells[method, seed] = record
            else:
                pending.append((method, seed))
    log_dir = Path(reproduce_args.log_dir or os.path.join(training_args.output_dir, "logs"))
    jobs = []
    for method, seed in pending:
        kwargs: dict[str, Any] = {"command": command}
        if pretrained_from is not None:
            kwargs["pretrained_cell"] = str(cell_path(pretrained_from, method, seed))
        jobs.append(Job(run_cell, (method, seed, data_args, training_args, model_args, reproduce_args), kwargs,
                        label=f"{method} seed {seed}", log_file=str(log_dir / f"{method}_seed{seed}.log")))
    if reproduce_args.pixels and not (Path(reproduce_args.results_dir) / PIXELS_FILE).is_file():
        image_size = _load_config(model_args, ViTMAEConfig, "the pixel floor").image_size  # the encoders' input
        jobs.append(Job(run_pixel_cell, (data_args, reproduce_args), {"image_size": image_size, "command": command},
                        label="pixels", log_file=str(log_dir / "pixels.log")))
    return cells, jobs


def run_grid(
    reproduce_args: ReproduceArguments,
    data_args: ImageDataArguments,
    training_args: MAGMATrainingArguments,
    model_args: MAGMAModelArguments,
    *,
    command: str,
) -> dict[tuple[str, int], dict[str, Any]]:
    """Run every selected (method, seed) cell that has no JSON yet, then rewrite ``summary.md`` from all the
    cells in ``results_dir``; returns the selected cells' records. A finished cell whose recorded settings differ
    from the current ones raises ``ValueError`` (use another ``results_dir``)."""
    if reproduce_args.num_threads is not None:
        torch.set_num_threads(reproduce_args.num_threads)
    cells, jobs = plan_grid(reproduce_args, data_args, training_args, model_args, command=command)
    for record in run_jobs(jobs, reproduce_args.processes, reproduce_args.num_threads):
        if record["method"] in METHODS:  # not the pixel floor's record
            cells[record["method"], record["seed"]] = record
    write_summary(reproduce_args.results_dir)
    return {key: cells[key] for key in sorted(cells, key=lambda k: (reproduce_args.methods.index(k[0]),
                                                                    reproduce_args.seeds.index(k[1])))}


def run_pixel_cell(
    data_args: ImageDataArguments, reproduce_args: ReproduceArguments, *, image_size: int, command: str, seed: int = 0
) -> dict[str, Any]:
    """The model-free floor of the grid: `run_pixel_evaluation` with the grid's protocol, recorded with its
    provenance in ``results_dir/pixels.json``; returns the record."""
    eval_args = EvaluationArguments(
        pixels=True, knn_k=reproduce_args.knn_k, linear_epochs=reproduce_args.linear_epochs,
        label_fractions=list(reproduce_args.label_fractions),
    )
    started = datetime.datetime.now(datetime.timezone.utc)
    begin = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:  # its eval_results.json goes into pixels.json, with provenance
        eval_training_args = TrainingArguments(output_dir=scratch, seed=seed, report_to="none", use_cpu=True,
                                               disable_tqdm=True)
        record = run_pixel_evaluation(eval_args, data_args, eval_training_args, image_size=image_size)
    results = record["results"]
    record.update({
        "method": "pixels", "seed": seed,
        "linear_top1": results.get("linear_accuracy"), "knn_top1": results.get("knn_accuracy"),
        "eval_seconds": round(time.perf_counter() - begin, 1), "command": command, "git_commit": git_commit(),
        "machine": machine_info(), "date": started.isoformat(timespec="seconds"),
        "evaluation": evaluation_settings(reproduce_args),
    })
    path = Path(reproduce_args.results_dir) / PIXELS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    logger.info("pixels: linear %.4f, k-NN %.4f -> %s", record["linear_top1"] or float("nan"),
                record["knn_top1"] or float("nan"), path)
    return record


def make_parser(description: str | None = None) -> MAGMAArgumentParser:
    """The command line: `ReproduceArguments`, `ImageDataArguments`, `MAGMATrainingArguments`,
    `MAGMAModelArguments`, a YAML ``--config``."""
    return MAGMAArgumentParser(
        (ReproduceArguments, ImageDataArguments, MAGMATrainingArguments, MAGMAModelArguments),
        description=description or __doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main(
    reproduce_args: ReproduceArguments,
    data_args: ImageDataArguments,
    training_args: MAGMATrainingArguments,
    model_args: MAGMAModelArguments,
    command: str | None = None,
) -> dict:
    """Run the selected cells that are not done yet and rewrite the summary; returns the cells' records (with
    ``--sweep``, `hf_magma.cli.sweep.run_sweep`'s: one grid per setting)."""
    command = command or shlex.join(["python", "scripts/reproduce.py", *sys.argv[1:]])
    if reproduce_args.sweep:
        return run_sweep(reproduce_args, data_args, training_args, model_args, command=command,
                         parser=make_parser(), plan_grid=plan_grid)
    return run_grid(reproduce_args, data_args, training_args, model_args, command=command)


def entry_point() -> None:
    """The `hf-magma-reproduce` console command."""
    run_program(lambda: main(*make_parser().parse_args_and_config()))


if __name__ == "__main__":
    entry_point()
