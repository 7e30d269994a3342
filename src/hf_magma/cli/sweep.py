"""``scripts/reproduce.py --sweep``: an ablation as one command. Each setting of the swept options is a grid of the
recipe's methods and seeds, with its cells in ``<results_dir>/<setting>/`` (reused when they exist, refused when
their settings differ, as any grid's) and its checkpoints in ``<output_dir>/<setting>/``; ``<results_dir>/sweep.md``
has one row per setting and method: linear, k-NN, the smallest label fraction, the MAGMA window the run used.

Examples:

    # the paper's Table 4 around the recipe: lambda, then e_st (one at a time)
    python scripts/reproduce.py --config recipes/reproduce_fashion_mnist_long.yaml --methods m-mae --seeds 0 \\
        --sweep magma_weight=0.01,0.1,1,10 magma_start_epoch=0,2,5,auto

    # layer pairs (reference:target, 0-based blocks), and a grid of two decoder sizes
    python scripts/reproduce.py --config ... --sweep magma_reference_layers:magma_target_layer=1:2,2:3,1:3
    python scripts/reproduce.py --config ... --sweep decoder_hidden_size=32,64 decoder_num_hidden_layers=1,2 \\
        --sweep_mode grid
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import os
import re
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import ViTMAEConfig

from ..data.arguments import ImageDataArguments
from ..models.arguments import MAGMAModelArguments
from ..training.training_args import MAGMATrainingArguments
from .grid_jobs import run_jobs
from .grid_results import METHODS, load_cells, method_title, write_summary
from .grid_settings import cell_settings, method_training_args

logger = logging.getLogger(__name__)

#: The recipe's own setting (the centre of a one-at-a-time sweep).
RECIPE = "recipe"
#: Options of the evaluation alone: a setting of these re-evaluates the recipe's checkpoints.
EVALUATION_OPTIONS = ("pooling", "knn_k", "linear_epochs", "label_fractions", "eval_batch_size")
#: Options that the sweep itself sets, per setting.
#: The settings of every sweep written into a results folder, and their commands.
INDEX_FILE = "sweep.json"
FIXED_OPTIONS = ("sweep", "sweep_mode", "results_dir", "output_dir", "log_dir", "methods", "seeds", "processes")

Setting = dict[str, str]  # option -> its value as given on the command line ('+' joining the items of a list)


@dataclasses.dataclass(frozen=True)
class SweepAxis:
    """One ``--sweep`` entry: the options changed together, and their values, one tuple per setting."""

    options: tuple[str, ...]
    values: tuple[tuple[str, ...], ...]


def parse_axis(spec: str) -> SweepAxis:
    """``option=v1,v2`` or ``a:b=x1:y1,x2:y2`` (options that change together) as a `SweepAxis`.

    Raises:
        ValueError: the entry has no ``=``, no values, or a value with another number of parts than options.
    """
    names, sep, values = spec.partition("=")
    options = tuple(name.strip().lstrip("-") for name in names.split(":"))
    if not sep or not all(options) or not values.strip():
        raise ValueError(f"--sweep {spec!r}: expected option=v1,v2,... (or a:b=x1:y1,x2:y2 for options that "
                         "change together)")
    settings = []
    for value in values.split(","):
        parts = tuple(part.strip() for part in value.split(":"))
        if len(parts) != len(options) or not all(parts):
            raise ValueError(f"--sweep {spec!r}: value {value!r} needs {len(options)} part(s) joined by `:`, one "
                             f"per option ({':'.join(options)})")
        settings.append(parts)
    return SweepAxis(options, tuple(dict.fromkeys(settings)))


def sweep_settings(axes: Sequence[SweepAxis], mode: str) -> list[Setting]:
    """The settings of a sweep: ``one_at_a_time``, the recipe (``{}``) then each axis's values alone; ``grid``,
    every combination. Settings may still repeat the recipe's own values: `run_sweep` merges those."""
    seen = [option for axis in axes for option in axis.options]
    repeated = sorted({option for option in seen if seen.count(option) > 1})
    if repeated:
        raise ValueError(f"--sweep names {', '.join(repeated)} more than once: give each option's values once")
    if mode == "grid":
        return [{option: value for axis, values in zip(axes, combination, strict=True)
                 for option, value in zip(axis.options, values, strict=True)}
                for combination in itertools.product(*(axis.values for axis in axes))]
    return [{}] + [dict(zip(axis.options, values, strict=True)) for axis in axes for values in axis.values]


def setting_name(setting: Setting) -> str:
    """The setting's folder name: ``recipe``, or ``option-value`` pairs joined by ``__``."""
    if not setting:
        return RECIPE
    return "__".join(f"{option}-{re.sub(r'[^A-Za-z0-9.+-]', '_', value)}" for option, value in setting.items())


def apply_setting(
    arguments: tuple[Any, ImageDataArguments, MAGMATrainingArguments, MAGMAModelArguments],
    setting: Setting,
    parser: argparse.ArgumentParser,
) -> tuple[Any, ImageDataArguments, MAGMATrainingArguments, MAGMAModelArguments]:
    """The recipe's arguments (`ReproduceArguments` first) with ``setting`` applied, each value converted and
    checked as ``parser`` (the command's) does on the command line (a ViTMAEConfig attribute goes into
    ``config_overrides``).

    Raises:
        ValueError: an option that is neither this command's nor a ViTMAEConfig attribute, or a bad value.
    """
    actions = {action.dest: action for action in parser._actions}
    changes: list[dict[str, Any]] = [{} for _ in arguments]
    config_changes: dict[str, str] = {}
    for option, value in setting.items():
        owner = next((i for i, instance in enumerate(arguments)
                      if option in {f.name for f in dataclasses.fields(instance)}), None)
        if option in FIXED_OPTIONS:
            raise ValueError(f"--sweep {option}: set per setting by the sweep itself; it cannot be swept")
        if owner is None:
            if option not in ViTMAEConfig().to_dict():
                raise ValueError(f"--sweep {option}: not an option of scripts/reproduce.py (see --help) nor a "
                                 "ViTMAEConfig attribute (for --config_overrides)")
            config_changes[option] = value.replace("+", ",")
            continue
        action = actions[option]
        items = value.split("+")
        if action.nargs in ("+", "*"):
            converted = [action.type(item) if action.type else item for item in items]
        else:
            text = ",".join(items)
            converted = action.type(text) if action.type else text
        if action.choices is not None and converted not in action.choices:
            raise ValueError(f"--sweep {option}={value}: must be one of {list(action.choices)}")
        changes[owner][option] = converted
    if config_changes:
        model_args = arguments[3]
        overrides = dict(item.split("=", 1) for item in (model_args.config_overrides or "").split(",") if item)
        overrides.update(config_changes)
        changes[3]["config_overrides"] = ",".join(f"{key}={value}" for key, value in overrides.items())
    return tuple(dataclasses.replace(instance, **change) if change else instance  # type: ignore[return-value]
                 for instance, change in zip(arguments, changes, strict=True))


def methods_for_setting(setting: Setting, methods: Sequence[str]) -> list[str]:
    """The methods a setting changes: a setting of MAGMA (uniformity) options alone leaves the methods without that
    term alone; one that also changes other options (the learning rate, the model, ...) runs every method, those
    without the term on the other options."""
    magma = any(option.startswith("magma_") for option in setting)
    uniformity = any(option.startswith("uniformity_") for option in setting)
    if not setting or not all(option.startswith(("magma_", "uniformity_")) for option in setting):
        return list(methods)
    return [m for m in methods if (magma and METHODS[m][0]) or (uniformity and METHODS[m][1])]


def run_sweep(
    reproduce_args: Any,
    data_args: ImageDataArguments,
    training_args: MAGMATrainingArguments,
    model_args: MAGMAModelArguments,
    *,
    command: str,
    parser: argparse.ArgumentParser,
    plan_grid: Callable[..., tuple[dict, list]],
) -> dict[str, dict[tuple[str, int], dict[str, Any]]]:
    """Run every setting of ``reproduce_args.sweep`` (`ReproduceArguments`) as a grid (module docstring) with
    ``plan_grid`` (`hf_magma.cli.reproduce.plan_grid`) and write ``sweep.md``; ``parser`` is the command's, which
    reads the swept values. Returns each setting's cells by setting name. Settings that repeat the recipe's values
    run once, as the recipe."""
    if reproduce_args.num_threads is not None:
        torch.set_num_threads(reproduce_args.num_threads)
    axes = [parse_axis(spec) for spec in reproduce_args.sweep]
    recipe = (reproduce_args, data_args, training_args, model_args)
    plans: dict[str, tuple[Setting, tuple, bool, list[str]]] = {}
    by_settings: list[tuple[str, Any]] = []  # (setting name, a method's cell settings)
    for setting in sweep_settings(axes, reproduce_args.sweep_mode):
        name = setting_name(setting)
        applied = apply_setting(recipe, setting, parser)
        methods = methods_for_setting(setting, reproduce_args.methods)
        if not methods:
            logger.info("%s: none of --methods %s uses the swept term: skipped", name, reproduce_args.methods)
            continue
        evaluation_only = bool(setting) and all(option in EVALUATION_OPTIONS for option in setting)
        grid, data, training, model = applied
        new = []
        for method in methods:  # e.g. magma_weight=1 when the recipe's lambda is 1: its cells are the recipe's
            # As the JSON records it, compared by value (a YAML 5 and a command-line 5.0 are one setting).
            key = json.loads(json.dumps(
                [method, cell_settings(data, method_training_args(training, method, 0), model, grid)], default=str))
            same = next((other for other, seen in by_settings if seen == key), None)
            if same is not None:
                logger.info("%s: %s is the setting %s: run once", name, method, same)
            else:
                by_settings.append((name, key))
                new.append(method)
        if new:
            plans[name] = (setting, applied, evaluation_only, new)

    cells: dict[str, dict[tuple[str, int], dict[str, Any]]] = {}
    first_pass, second_pass = [], []
    for name, (setting, applied, evaluation_only, methods) in plans.items():
        sweep_args, data, training, model = applied
        # An evaluation-only setting re-evaluates the recipe's checkpoints.
        source = RECIPE if evaluation_only else name
        grid_args = dataclasses.replace(
            sweep_args, methods=methods, results_dir=os.path.join(reproduce_args.results_dir, name), sweep=[],
            pixels=reproduce_args.pixels and not setting,  # the floor once, in the recipe's folder
            log_dir=os.path.join(reproduce_args.log_dir or os.path.join(training_args.output_dir, "logs"), name),
        )
        training = dataclasses.replace(training, output_dir=os.path.join(training_args.output_dir, source))
        pretrained = os.path.join(reproduce_args.results_dir, RECIPE) if evaluation_only else None
        done, jobs = plan_grid(grid_args, data, training, model, command=command, pretrained_from=pretrained)
        cells[name] = done
        for job in jobs:
            job.label = f"{name}: {job.label}"
        (second_pass if evaluation_only else first_pass).append((name, grid_args, jobs))
    for batch in (first_pass, second_pass):  # evaluation-only settings need the recipe's checkpoints
        jobs = [job for _, _, grid_jobs in batch for job in grid_jobs]
        owners = [name for name, _, grid_jobs in batch for _ in grid_jobs]
        for name, record in zip(owners, run_jobs(jobs, reproduce_args.processes, reproduce_args.num_threads),
                                strict=True):
            if record["method"] in METHODS:
                cells[name][record["method"], record["seed"]] = record
        for _, grid_args, _ in batch:
            if any(Path(grid_args.results_dir).glob("*_seed*.json")):
                write_summary(grid_args.results_dir)
    write_sweep_summary(reproduce_args.results_dir, {name: plans[name][0] for name in plans}, command=command)
    return cells


def _percent(values: Sequence[float | None]) -> str:
    values = [100 * v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} +- {statistics.stdev(values):.2f}"


def _window(cells: Sequence[dict[str, Any]]) -> str:
    """The MAGMA window the cells used, in steps (and epochs), or ``-`` for a method without the term."""
    windows = {json.dumps(c.get("magma_window")) for c in cells if c.get("magma_window")}
    if not windows:
        return "-"
    parts = []
    for window in sorted(windows):
        window = json.loads(window)
        if window.get("start_step") is None:
            parts.append("never on")
            continue
        text = f"steps {window['start_step']}-{window['end_step']}"
        if "decided_at_step" in window:
            text += " (auto)"
        parts.append(text)
    return "; ".join(parts)


def sweep_table(results_dir: str | os.PathLike, settings: dict[str, Setting]) -> str:
    """The Markdown table of a sweep: per setting and method, n seeds, linear / k-NN / the smallest label
    fraction's linear top-1 (%, mean +- sample std), the MAGMA window used, mean pretraining time."""
    rows = ["| setting | method | n | linear top-1 (%) | k-NN top-1 (%) | linear, fewest labels (%) "
            "| MAGMA window (steps) | pretraining (s) |", "|---|---|---|---|---|---|---|---|"]
    for name, setting in settings.items():
        folder = Path(results_dir) / name
        cells = load_cells(folder) if folder.is_dir() else []
        label = ", ".join(f"{option}={value}" for option, value in setting.items()) or "the recipe"
        for method in METHODS:
            mine = [c for c in cells if c["method"] == method]
            if not mine:
                continue
            fractions = sorted({k for c in mine for k in c["results"] if k.startswith("linear_accuracy_")},
                               key=lambda k: float(k[len("linear_accuracy_"):-len("pct")]))
            fewest = _percent([c["results"].get(fractions[0]) for c in mine]) + \
                f" ({fractions[0][len('linear_accuracy_'):-len('pct')]} %)" if fractions else "-"
            seconds = [c["pretrain_seconds"] for c in mine if c.get("pretrain_seconds") is not None]
            time = f"{statistics.mean(seconds):.0f}" if seconds else "-"
            if any("pretrained_cell" in c for c in mine):
                time += " (the recipe's checkpoints)"
            linear, knn = _percent([c["linear_top1"] for c in mine]), _percent([c["knn_top1"] for c in mine])
            rows.append(f"| {label} | {method_title(method)} | {len(mine)} | {linear} | {knn} | {fewest} "
                        f"| {_window(mine)} | {time} |")
    return "\n".join(rows)


def write_sweep_summary(results_dir: str | os.PathLike, settings: dict[str, Setting], *, command: str) -> Path:
    """Write ``sweep.md`` in ``results_dir``: the table of `sweep_table` and its provenance, over this sweep's
    settings and those of earlier sweeps into the same folder (kept in its ``sweep.json``, e.g. a second seed of
    a few settings)."""
    index_path = Path(results_dir) / INDEX_FILE
    index = json.loads(index_path.read_text()) if index_path.is_file() else {"settings": {}, "commands": []}
    index["settings"].update(settings)
    if command not in index["commands"]:
        index["commands"].append(command)
    index_path.parent.mkdir(parents=True, exist_ok=True)
    index_path.write_text(json.dumps(index, indent=2) + "\n")
    settings, commands = index["settings"], index["commands"]
    cells = [c for name in settings for c in (load_cells(Path(results_dir) / name)
                                              if (Path(results_dir) / name).is_dir() else [])]
    commits = sorted({str(c["git_commit"]) for c in cells})
    machines = sorted({f"{c['machine']['cpu']}, {c['machine']['cpu_count']} cores, torch {c['machine']['torch']}"
                       for c in cells})
    dates = sorted(c["date"] for c in cells)
    pretraining = sum(c.get("pretrain_seconds") or 0 for c in cells if "pretrained_cell" not in c)
    evaluation = sum(c.get("eval_seconds") or 0 for c in cells)
    lines = [
        "# Sweep",
        "",
        "Top-1 accuracy (%) on the test split, one row per setting and method (mean +- sample std over seeds). "
        "Each setting's cells and summary are in its folder here.",
        "",
        sweep_table(results_dir, settings),
        "",
        "## Provenance",
        "",
        f"- commands: {'; '.join(f'`{c}`' for c in commands)}",
        f"- git commit: {', '.join(commits) or '-'}",
        f"- machine: {'; '.join(machines) or '-'}",
        f"- dates: {dates[0]} to {dates[-1]}" if dates else "- dates: -",
        f"- pretraining time in all: {pretraining:.0f} s; evaluation: {evaluation:.0f} s (cells side by side with "
        "--processes: the wall time is shorter)",
    ]
    path = Path(results_dir) / "sweep.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
