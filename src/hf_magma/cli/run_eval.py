"""Evaluate a checkpoint's frozen features the paper's way: k-NN and linear probe (optionally on 1/5/10/100% of
the labels), and optionally full fine-tuning. Writes eval_results.json and records the results in the model card.

Installed as the `hf-magma-eval` command; `python scripts/run_eval.py` and `python -m hf_magma.cli.run_eval`
are the same program.

Examples:

    # a local checkpoint on the offline Fashion-MNIST
    python scripts/run_eval.py --model_name_or_path outputs/m-mae-fashion-mnist --output_dir outputs/eval

    # a Hub checkpoint on CIFAR-100, low-label regime, card pushed back to the Hub
    python scripts/run_eval.py --model_name_or_path user/m-mae-cifar100 --dataset_name uoft-cs/cifar100 \\
        --label_fractions 0.01 0.05 0.1 1 --output_dir outputs/eval --push_to_hub

    # fine-tuning the MAE way (layer decay, drop path, mixup / CutMix, RandAugment, warm-up + cosine)
    python scripts/run_eval.py --config recipes/finetune_mae_style.yaml --model_name_or_path outputs/m-mae \\
        --output_dir outputs/finetune

    # the model-free floor: the same protocol on the normalised pixels (28 x 28 grey values for Fashion-MNIST)
    python scripts/run_eval.py --pixels --output_dir outputs/pixels
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from transformers import AutoConfig, TrainingArguments, set_seed

from ..data.arguments import ImageDataArguments
from ..data.channels import resolve_image_statistics
from ..data.class_folders import scan_class_folders
from ..data.columns import check_label_feature, resolve_columns
from ..data.fashion_mnist import FASHION_MNIST_HUB_ID
from ..data.labels import class_count
from ..data.loading import load_image_datasets
from ..data.transforms import ImageTransform
from ..encoders.features import extract_features
from ..encoders.loading import load_encoder
from ..evaluation import EvaluationArguments, HubPushError, evaluate_features, finetune, record_results_in_card
from ..evaluation.fine_tuning_args import FineTuningArguments, finetune_learning_rate
from ..evaluation.pixels import DEFAULT_PIXEL_SIZE, image_channels, pixel_features, pixel_transform
from ..models.arguments import load_image_processor
from ..records.figure_options import parse_figures
from ..visualize import write_checkpoint_figures
from .parser import MAGMAArgumentParser, run_program, setup_logging

logger = logging.getLogger(__name__)


def format_results_table(
    results: dict[str, float], label_subsets: dict[str, dict[str, float]] | None = None
) -> str:
    """A text table of the results, accuracies in percent, with the labels each label-fraction result used."""
    width = max(len("metric"), *(len(name) for name in results))
    lines = [f"{'metric':<{width}}  top-1 (%)", f"{'-' * width}  ---------"]
    for name, value in results.items():
        line = f"{name:<{width}}  {100 * value:9.2f}"
        if label_subsets and name in label_subsets:
            subset = label_subsets[name]
            line += f"  ({subset['num_labelled']} labels, {100 * subset['fraction']:.3g} % of the training set)"
        lines.append(line)
    return "\n".join(lines)


def _label_subset_args(label_subsets: dict[str, dict[str, float]]) -> dict[str, dict[str, Any]]:
    """The labels behind each label-fraction result, as the model card's metric arguments."""
    return {
        key: {"labelled examples": int(s["num_labelled"]), "label fraction": round(float(s["fraction"]), 6)}
        for key, s in label_subsets.items()
    }


def _push_target(eval_args: EvaluationArguments, training_args: TrainingArguments) -> str | None:
    """The Hub repo that receives the card (``None`` without ``--push_to_hub``); checks ``--figures`` too."""
    model_id = eval_args.model_name_or_path
    is_local = os.path.isdir(model_id)
    push_to = None
    if training_args.push_to_hub:
        push_to = training_args.hub_model_id or (None if is_local else model_id)
        if push_to is None:
            raise ValueError("--push_to_hub with a local checkpoint needs --hub_model_id (the repo to update)")
    if eval_args.figures:
        parse_figures(eval_args.figures)
        if not is_local:
            raise ValueError("--figures needs a local checkpoint folder (its model card receives the figures)")
    return push_to


def evaluation_splits(
    eval_args: EvaluationArguments, data_args: ImageDataArguments, seed: int
) -> tuple[Any, Any, str, str, str]:
    """The train split, the test split, the test split's name and the image and label columns, checked."""
    splits = load_image_datasets(data_args, seed=seed)
    test_name = eval_args.test_split or ("test" if "test" in splits else "validation")
    if test_name not in splits:
        raise ValueError(f"no {test_name!r} split to evaluate on; the data has {sorted(splits)}")
    train, test = splits["train"], splits[test_name]
    image_column, label_column = resolve_columns(train, data_args.image_column_name, data_args.label_column_name)
    if label_column is None and data_args.train_dir is not None:
        classes = scan_class_folders({"train": ("train_dir", data_args.train_dir)}).classes
        found = f"one class folder ({classes[0]})" if len(classes) == 1 else "no class folders (images directly in it)"
        raise ValueError(
            f"--train_dir {data_args.train_dir} holds {found}: evaluation needs labels from two class folders or "
            "more (one subfolder per class)"
        )
    if label_column is None:
        raise ValueError(
            f"the dataset has no label column (columns: {train.column_names}): evaluation needs class labels; "
            "pass --label_column_name if they have an unusual name"
        )
    for name, split in (("train", train), (test_name, test)):
        if split.features is not None and label_column not in split.features:
            raise ValueError(f"the {name} split has no label column {label_column!r}")
        check_label_feature(split.features, label_column)
    return train, test, test_name, image_column, label_column


def evaluation_image_size(image_size: int | None, config: Any) -> int:
    """``--image_size`` (default: the checkpoint's ``config.image_size``), refused unless a multiple of the patch
    size."""
    if image_size is None:
        return int(config.image_size)
    patch = config.patch_size
    if image_size % patch:
        raise ValueError(f"--image_size {image_size} is not a multiple of the checkpoint's patch size {patch}: "
                         f"give e.g. {max(1, round(image_size / patch)) * patch}")
    return image_size


def _check_finetune_options(eval_args: EvaluationArguments, finetune_args: FineTuningArguments | None) -> None:
    """Fine-tuning options without ``--finetune`` are refused rather than silently ignored."""
    changed = finetune_args.changed() if finetune_args is not None else []
    if changed and not eval_args.finetune:
        raise ValueError(f"{', '.join(changed)} only apply to fine-tuning (--finetune is off): add --finetune true "
                         "or drop them")


def run_evaluation(
    eval_args: EvaluationArguments,
    data_args: ImageDataArguments,
    training_args: TrainingArguments,
    finetune_args: FineTuningArguments | None = None,
) -> dict[str, float]:
    """The whole evaluation of ``scripts/run_eval.py``.

    Loads the data and the encoder, extracts features once, runs k-NN and the linear probe(s) (and fine-tuning
    with ``--finetune``), writes ``eval_results.json``, prints a table, records the results in the model card
    (pushed with ``--push_to_hub``) and draws ``--figures``.

    Args:
        eval_args: the checkpoint and the protocol.
        data_args: the images (train and test splits).
        training_args: ``output_dir``, ``seed``, the device, Hub options and fine-tuning hyperparameters.
        finetune_args: MAE's fine-tuning additions (default: none, a plain `Trainer` run).

    Returns:
        ``{metric: top-1 accuracy in [0, 1]}`` (``knn_accuracy``, ``linear_accuracy``...).
    """
    model_id = eval_args.model_name_or_path
    finetune_args = finetune_args or FineTuningArguments()
    _check_finetune_options(eval_args, finetune_args)
    push_to = _push_target(eval_args, training_args)
    set_seed(training_args.seed)
    # Features are extracted on the run's device (a GPU when there is one); k-NN and the probe run on the CPU.
    encoder = load_encoder(model_id, revision=eval_args.revision).to(training_args.device)
    train, test, test_name, image_column, label_column = evaluation_splits(eval_args, data_args, training_args.seed)
    image_size = evaluation_image_size(eval_args.image_size, encoder.config)
    processor = load_image_processor(model_id, image_size, revision=eval_args.revision)
    statistics = resolve_image_statistics(data_args, train, image_column, encoder.config.num_channels,
                                          (processor.image_mean, processor.image_std), training_args.seed)
    if statistics is not None:  # --image_mean / --image_std instead of the checkpoint's
        processor.image_mean, processor.image_std = statistics
    train_transform, eval_transform = (
        ImageTransform.from_image_processor(processor, train=train, num_channels=encoder.config.num_channels)
        for train in (True, False)
    )
    options = dict(pooling=eval_args.pooling, batch_size=eval_args.batch_size, transform=eval_transform,
                   image_column=image_column, label_column=label_column, image_size=image_size)
    train_x, train_y = extract_features(encoder, train, **options)
    test_x, test_y = extract_features(encoder, test, **options)
    label_subsets: dict[str, dict[str, float]] = {}
    results = evaluate_features(train_x, train_y, test_x, test_y, eval_args, seed=training_args.seed,
                                label_subsets=label_subsets)
    if eval_args.finetune:
        results.update(
            finetune(
                model_id, train, test, training_args, train_transform=train_transform, eval_transform=eval_transform,
                image_column=image_column, label_column=label_column, num_labels=class_count(train_y, test_y),
                revision=eval_args.revision, options=finetune_args, image_size=image_size,
            )
        )

    dataset_name = data_args.dataset_name or data_args.train_dir or FASHION_MNIST_HUB_ID
    output_dir = Path(training_args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "model_name_or_path": model_id,
        "dataset": dataset_name,
        "train_split": data_args.train_split,
        "test_split": test_name,
        "num_train": int(train_x.shape[0]),
        "num_test": int(test_x.shape[0]),
        "feature_dim": int(train_x.shape[1]),
        "settings": dataclasses.asdict(eval_args),
        "label_subsets": label_subsets,
        "results": results,
    }
    if eval_args.finetune:
        record["finetune_settings"] = {**dataclasses.asdict(finetune_args),
                                       "learning_rate": finetune_learning_rate(training_args, finetune_args)}
    (output_dir / "eval_results.json").write_text(json.dumps(record, indent=2) + "\n")
    print(format_results_table(results, label_subsets))
    card = record_results_in_card(
        model_id, results, dataset_name=dataset_name, dataset_split=test_name, output_dir=output_dir,
        revision=eval_args.revision, push_to=push_to, token=training_args.hub_token,
        metric_args=_label_subset_args(label_subsets),
    )
    logger.info("Results written to %s and recorded in %s", output_dir / "eval_results.json", card)
    if eval_args.figures:
        accuracy = results.get("linear_accuracy")
        # The figures see the images exactly as the features above did.
        written = write_checkpoint_figures(
            model_id, test, figures=eval_args.figures, image_column=image_column, label_column=label_column,
            image_processor=processor,
            linear_accuracy=None if accuracy is None else {Path(model_id).name: accuracy}, pooling=eval_args.pooling,
            seed=training_args.seed,
        )
        logger.info("Figures written and embedded in the model card: %s", ", ".join(written.values()))
    return results


def make_parser(description: str | None = None) -> MAGMAArgumentParser:
    """The command line: `EvaluationArguments`, `ImageDataArguments`, `TrainingArguments`, `FineTuningArguments`,
    a YAML ``--config``."""
    return MAGMAArgumentParser(
        (EvaluationArguments, ImageDataArguments, TrainingArguments, FineTuningArguments),
        description=description or __doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main(
    eval_args: EvaluationArguments,
    data_args: ImageDataArguments,
    training_args: TrainingArguments,
    finetune_args: FineTuningArguments | None = None,
) -> dict[str, float]:
    """Evaluate, write ``eval_results.json`` and the model card, print a table; returns the results."""
    setup_logging("run_eval", training_args.get_process_log_level())
    if eval_args.pixels:
        _check_finetune_options(eval_args, finetune_args)
        return run_pixel_evaluation(eval_args, data_args, training_args)["results"]
    return run_evaluation(eval_args, data_args, training_args, finetune_args)


def run_pixel_evaluation(
    eval_args: EvaluationArguments,
    data_args: ImageDataArguments,
    training_args: TrainingArguments,
    *,
    image_size: int | None = None,
    num_channels: int | None = None,
) -> dict[str, Any]:
    """`run_evaluation`'s protocol (k-NN, linear probe per label fraction) on the normalised pixels; writes
    ``eval_results.json`` in ``training_args.output_dir`` and prints the table.

    ``eval_args.model_name_or_path``, when given, names the image processor (mean/std) to normalise with, as the
    checkpoint's evaluation would, and its config the resolution; without it, ViT's defaults (mean 0.5, std 0.5),
    which the Fashion-MNIST recipes use, at ``image_size`` (default 28). ``num_channels`` defaults to the images'
    own: 1 when the first 32 training images are all grey (an RGB encoder sees three copies of the same values),
    else 3.

    Returns:
        The record written: settings, sizes, ``results`` (``knn_accuracy``, ``linear_accuracy[_<p>pct]``) and the
        feature-extraction and scoring times in seconds.
    """
    set_seed(training_args.seed)
    train, test, test_name, image_column, label_column = evaluation_splits(eval_args, data_args, training_args.seed)
    image_size = image_size or eval_args.image_size
    if image_size is None:
        source = eval_args.model_name_or_path
        image_size = AutoConfig.from_pretrained(source).image_size if source is not None else DEFAULT_PIXEL_SIZE
    if num_channels is None:  # grey data stays one channel; any colour image among the first 32 makes it three
        num_channels = max(image_channels(value) for value in train.select(range(min(32, len(train))))[image_column])
    transform = pixel_transform(eval_args.model_name_or_path, image_size, num_channels)

    begin = time.perf_counter()
    train_x, train_y = pixel_features(train, transform, image_column=image_column, label_column=label_column)
    test_x, test_y = pixel_features(test, transform, image_column=image_column, label_column=label_column)
    extract_seconds = time.perf_counter() - begin
    begin = time.perf_counter()
    results = evaluate_features(train_x, train_y, test_x, test_y, eval_args, seed=training_args.seed,
                                show_progress=not training_args.disable_tqdm)
    score_seconds = time.perf_counter() - begin

    record = {
        "model_name_or_path": "pixels",
        "image_processor": eval_args.model_name_or_path or "ViT defaults",
        "dataset": data_args.dataset_name or data_args.train_dir or FASHION_MNIST_HUB_ID,
        "train_split": data_args.train_split,
        "test_split": test_name,
        "num_train": int(train_x.shape[0]),
        "num_test": int(test_x.shape[0]),
        "feature_dim": int(train_x.shape[1]),
        "transform": repr(transform),
        "settings": dataclasses.asdict(eval_args),
        "results": results,
        "extract_seconds": round(extract_seconds, 1),
        "score_seconds": round(score_seconds, 1),
    }
    output_dir = Path(training_args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "eval_results.json").write_text(json.dumps(record, indent=2) + "\n")
    print(format_results_table(results))
    logger.info("Pixel floor written to %s", output_dir / "eval_results.json")
    return record


def entry_point() -> None:
    """The `hf-magma-eval` console command."""
    try:
        run_program(lambda: main(*make_parser().parse_args_and_config()))
    except HubPushError as error:
        sys.exit(f"hf-magma-eval: {error}")


if __name__ == "__main__":
    entry_point()
