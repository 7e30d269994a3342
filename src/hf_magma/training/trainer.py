"""`MAGMATrainer`: the transformers `Trainer` for MAE pretraining with the MAGMA schedule, per-term logging and an
online linear probe; its settings are `hf_magma.training.training_args.MAGMATrainingArguments`."""

from __future__ import annotations

import copy
import logging
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

import datasets
import torch
from accelerate.data_loader import prepare_data_loader
from safetensors import SafetensorError
from torch import nn
from transformers import Trainer
from transformers.trainer_utils import EvalLoopOutput

from ..models.export import save_encoder
from ..models.mae import ViTMAEWithMAGMA
from ..models.ssl import ViTForSSL
from ..records.logged_metrics import LOGGED_METRICS, LOGGED_TERMS, ONLINE_ACCURACY
from .eval_collator import EvalCollatorMixin
from .hub_push import HubPushMixin
from .online_probe import ONLINE_PROBE_FILE, OnlineLinearProbe
from .run_guard import RunGuardMixin
from .schedule import MAGMAScheduleMixin
from .training_args import MAGMATrainingArguments

logger = logging.getLogger(__name__)

# (uint8 pixel_values (B, C, H, W) on the device, seed) -> the model's inputs, e.g. {"pixel_values": normalised}
BatchTransform = Callable[[torch.Tensor, int], dict[str, torch.Tensor]]


def check_fsdp_state_dict_type(state_dict_type: Any) -> None:
    """Refuse FSDP state-dict types other than ``FULL_STATE_DICT``.

    With a sharded state dict the transformers `Trainer` writes no ``model.safetensors`` (neither in checkpoints nor
    in the final folder), so there would be no ``encoder/``, nothing for the Hub, and no checkpoint this library
    resumes from.

    Args:
        state_dict_type: accelerate's `FullyShardedDataParallelPlugin.state_dict_type` (an enum or its name).

    Raises:
        ValueError: naming the setting and the fix, for any type but ``FULL_STATE_DICT``.
    """
    name = str(getattr(state_dict_type, "name", state_dict_type)).rsplit(".", 1)[-1]
    if name != "FULL_STATE_DICT":
        raise ValueError(
            f"FSDP with fsdp_state_dict_type {name}: the Trainer would save no model.safetensors, so checkpoints "
            "would have no encoder/ and could not be resumed. Set `fsdp_state_dict_type: FULL_STATE_DICT` in the "
            "accelerate config (as scripts/accelerate_configs/fsdp.yaml does)."
        )


def _shape_differences(checkpoint: str, model: nn.Module, shown: int = 3) -> str:
    """A few ``name: saved shape -> present shape`` of the weights of ``checkpoint`` that ``model`` cannot hold."""
    from safetensors import safe_open

    present = {name: tuple(value.shape) for name, value in model.state_dict().items()}
    lines = []
    path = os.path.join(checkpoint, "model.safetensors")
    if os.path.isfile(path):
        with safe_open(path, framework="pt") as handle:
            for name in handle.keys():
                shape = tuple(handle.get_slice(name).get_shape())
                if name in present and present[name] != shape:
                    lines.append(f"{name}: {list(shape)} -> {list(present[name])}")
    if not lines:
        return "other weight shapes"
    return "; ".join(lines[:shown]) + (f"; and {len(lines) - shown} more" if len(lines) > shown else "")


class MAGMATrainer(HubPushMixin, RunGuardMixin, MAGMAScheduleMixin, EvalCollatorMixin, Trainer):
    """`Trainer` for `ViTMAEWithMAGMA` (M-MAE, MU-MAE, plain MAE with ``magma_weight=0``) and `ViTForSSL`
    (M-SimCLR, M-VICReg: batches with ``pixel_values`` and ``pixel_values_2``, e.g. from a `TwoViewCollator`).

    The MAGMA weight at each step is a function of the global step alone (so a resumed run follows exactly
    the schedule of an uninterrupted one) and is passed to the model as ``magma_weight=``. Training logs add
    ``reconstruction_loss``, ``magma_loss`` (also while its weight is 0), ``magma_weight`` and
    ``uniformity_loss`` (for `ViTForSSL`: ``objective_loss`` and VICReg's parts), averaged over the logging window
    and across processes, and ``online_accuracy`` when ``num_labels`` is given and batches carry ``labels``.
    Evaluation gives ``eval_loss`` and the same terms.
    Hub pushes (`HubPushMixin`) carry the project's model card, and a failed push never stops training.
    `RunGuardMixin` refuses output folders of other programs, rotates only this run's checkpoints and checks a
    resumed checkpoint's settings (``run_data`` describes the data for that check).

    Args:
        model: a `ViTMAEWithMAGMA` or a `ViTForSSL`.
        args: `MAGMATrainingArguments` (``remove_unused_columns`` must stay False).
        num_labels: the number of classes of the data's labels; turns the online probe on (>= 2).
        eval_data_collator: the collator of evaluation batches (e.g. without augmentation).
        **kwargs: the `transformers.Trainer` arguments (``train_dataset``, ``data_collator``...).
    """

    def __init__(self, model: ViTMAEWithMAGMA | ViTForSSL | None = None, args: MAGMATrainingArguments | None = None, *,
                 num_labels: int | None = None, eval_data_collator: Any = None,
                 batch_transforms: Mapping[str, BatchTransform] | None = None, **kwargs) -> None:
        if args is None:
            args = MAGMATrainingArguments(output_dir="trainer_output")
        if not isinstance(args, MAGMATrainingArguments):
            raise TypeError(f"`args` must be MAGMATrainingArguments, got {type(args).__name__}")
        if model is None or not isinstance(model, (ViTMAEWithMAGMA, ViTForSSL)):
            raise TypeError(f"`model` must be a ViTMAEWithMAGMA or a ViTForSSL, got {type(model).__name__}")
        if isinstance(model, ViTForSSL) and args.uniformity_weight > 0:
            raise ValueError("`uniformity_weight` is U-MAE's term; SimCLR/VICReg training (ViTForSSL) does not use it")
        if args.remove_unused_columns:
            raise ValueError("`remove_unused_columns` must be False: the image columns are decoded by the collator")
        if num_labels is not None and (isinstance(num_labels, bool) or not isinstance(num_labels, int)
                                       or num_labels < 2):
            raise ValueError(f"`num_labels` must be an integer >= 2, got {num_labels!r}")
        # The weights are the run's settings: written to the config so that they are saved with the checkpoint.
        model.config.magma_weight = float(args.magma_weight)
        model.config.uniformity_weight = float(args.uniformity_weight)
        model.magma_gather = args.magma_gather
        super().__init__(model=model, args=args, **kwargs)
        if self.is_fsdp_enabled:
            check_fsdp_state_dict_type(self.accelerator.state.fsdp_plugin.state_dict_type)
        logger.info("Training on %d process(es), distributed type: %s", args.world_size,
                    getattr(self.accelerator.distributed_type, "value", self.accelerator.distributed_type))
        # Evaluation batches are built without augmentation (resize + centre crop) when a collator is given.
        self.eval_data_collator = eval_data_collator
        # uint8 batches (the in-memory path) are augmented here, on the device, by phase ("train"/"eval").
        self.batch_transforms = dict(batch_transforms or {})
        self._transform_key: tuple[int, int] = (-1, 0)
        self._eval_batches = 0
        # The model's loss is a batch mean; let the Trainer scale it for gradient accumulation.
        self.model_accepts_loss_kwargs = False
        self.steps_per_epoch: int | None = None
        self._warned_schedule = False
        self._warned_singleton = False
        self._sums: dict[str, dict[str, tuple[torch.Tensor | float, float]]] = {"train": {}, "eval": {}}
        self.setup_schedule()
        self.online_probe: OnlineLinearProbe | None = None
        if num_labels is not None and args.online_probe:
            self.online_probe = OnlineLinearProbe(
                model.config.hidden_size, num_labels, args.online_probe_learning_rate
            ).to(args.device)

    def get_train_dataloader(self):
        dataset = self.train_dataset
        if isinstance(dataset, datasets.IterableDataset) and getattr(dataset, "_distributed", None) is not None:
            # Already split per process (`split_dataset_by_node`): skip accelerate's own sharding of iterables.
            dataloader = torch.utils.data.DataLoader(
                dataset,
                batch_size=self._train_batch_size,
                collate_fn=self.data_collator,
                num_workers=self.args.dataloader_num_workers,
                pin_memory=self.args.dataloader_pin_memory,
                prefetch_factor=self.args.dataloader_prefetch_factor,
            )
            dataloader = prepare_data_loader(
                dataloader, self.args.device, num_processes=1, process_index=0, put_on_device=True,
                dispatch_batches=False,
            )
        else:
            dataloader = super().get_train_dataloader()
        try:
            length = len(dataloader)
        except TypeError:
            length = None
        if length == 0:
            raise ValueError(
                f"The training data gives no batch: --dataloader_drop_last drops every batch of fewer than "
                f"--per_device_train_batch_size {self._train_batch_size} examples, and there are only "
                f"{len(dataset) if hasattr(dataset, '__len__') else 'a few'} (per process). Lower "
                "--per_device_train_batch_size or set --dataloader_drop_last false."
            )
        accumulation = self.args.gradient_accumulation_steps
        self.steps_per_epoch = None if length is None else max(math.ceil(length / accumulation), 1)
        self._check_schedule()
        return dataloader

    # ---- loss, logging ---------------------------------------------------------------------------------------
    def _accumulate(self, phase: str, values: dict[str, torch.Tensor | float], count: float = 1.0) -> None:
        """Add ``values`` (weighted by ``count``) to the phase's sums without reading anything back from the
        device: tensor sums stay on it, Python numbers and the counts stay Python numbers until `_reduce`."""
        sums = self._sums[phase]
        for name, value in values.items():
            total, weight = sums.get(name, (0.0, 0.0))
            if isinstance(value, torch.Tensor):
                value = value.detach().to(torch.float64)
            sums[name] = (total + value * count, weight + count)

    def _reduce(self, phase: str, names: tuple[str, ...]) -> dict[str, float]:
        """Means of the accumulated values over all processes; every process must call it (a collective)."""
        sums = self._sums[phase]
        device = self.args.device
        stacked = torch.zeros(len(names), 2, dtype=torch.float64, device=device)
        for row, name in enumerate(names):
            if name in sums:
                total, weight = sums[name]
                stacked[row, 0] = total.to(device) if isinstance(total, torch.Tensor) else total
                stacked[row, 1] = weight
        if self.args.world_size > 1:
            stacked = self.accelerator.reduce(stacked, reduction="sum")
        self._sums[phase] = {}
        values = stacked.cpu().tolist()  # the one read-back, at logging time
        return {name: total / weight for name, (total, weight) in zip(names, values, strict=True) if weight > 0}

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None):
        pixel_values = inputs["pixel_values"]
        labels = inputs.get("labels")
        phase = "train" if model.training else "eval"
        if phase == "train" and not self._warned_schedule and self.steps_per_epoch is not None:
            self._check_schedule()
        unwrapped = self.accelerator.unwrap_model(model)
        weight = self.magma_weight_at(self.state.global_step)
        probe = self.online_probe is not None and labels is not None
        last = unwrapped.config.num_hidden_layers
        # SimCLR's BatchNorm projector and VICReg's variance need two images: a batch of one (the last of an
        # epoch, or one whose other images were unreadable) is left out like an empty one.
        too_small = pixel_values.shape[0] == 0 or (isinstance(unwrapped, ViTForSSL) and pixel_values.shape[0] < 2)
        if too_small:
            if pixel_values.shape[0] and not self._warned_singleton:
                self._warned_singleton = True
                logger.warning("A batch of one image is left out: %s needs two per batch (set "
                               "--dataloader_drop_last true to drop the short last batch instead)",
                               unwrapped.config.ssl_objective)
            # The model still runs (on two blank images, weighted 0) so that the other processes' collectives (DDP,
            # the MAGMA all-gather) find this one; nothing is logged.
            blank = {name: value.new_zeros(2, *value.shape[1:]) for name, value in inputs.items()
                     if name.startswith("pixel_values")}
            loss = model(**blank, magma_weight=weight).loss * 0.0
            if probe and phase == "train":
                self.online_probe.step(torch.zeros(0, unwrapped.config.hidden_size, device=loss.device), labels[:0])
            return (loss, None) if return_outputs else loss

        views = {name: value for name, value in inputs.items() if name.startswith("pixel_values")}
        outputs = model(**views, magma_weight=weight, output_hidden_states=[last] if probe else None)
        values = {name: getattr(outputs, name) for name in LOGGED_TERMS if getattr(outputs, name, None) is not None}
        values["magma_weight"] = weight
        if phase == "train":
            self._accumulate(phase, values)
        else:  # weighted by the batch size, as the Trainer's eval_loss is
            self._accumulate(phase, values, count=float(pixel_values.shape[0]))
        if probe:
            with torch.no_grad():
                # Two-view models stack the views: the first ``len(labels)`` rows are the first view.
                features = unwrapped.vit.layernorm(outputs.hidden_states[last][: labels.shape[0], 0].detach())
            if phase == "train":
                correct = self.online_probe.step(features, labels)
            else:
                correct = self.online_probe.correct(features, labels)
            self._accumulate(phase, {ONLINE_ACCURACY: correct / labels.numel()}, count=float(labels.numel()))
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and not any(key.startswith("eval_") for key in logs):
            logs.update(self._reduce("train", LOGGED_METRICS))
            self.observe_logged_term(logs)
        super().log(logs, start_time)

    # ---- batches augmented on the device ---------------------------------------------------------------------
    def _prepare_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        inputs = super()._prepare_inputs(inputs)
        pixel_values = inputs.get("pixel_values") if isinstance(inputs, Mapping) else None
        # uint8, or float pixels not yet normalised (the in-memory path of other channel counts)
        if pixel_values is None or (pixel_values.dtype != torch.uint8 and not self.batch_transforms):
            return inputs
        phase = "train" if self.model.training else "eval"
        if phase not in self.batch_transforms:
            raise ValueError(f"A raw {phase} batch arrived but the trainer has no `batch_transforms[{phase!r}]` "
                             "to augment and normalise it")
        inputs = dict(inputs)
        inputs.update(self.batch_transforms[phase](inputs.pop("pixel_values"), self._batch_seed(phase)))
        return inputs

    def _batch_seed(self, phase: str) -> int:
        """The seed of one batch's augmentation: a function of (seed, process, optimizer step, micro-batch) when
        training, so that a resumed run draws exactly the crops of an uninterrupted one, with no RNG state read
        from the device; of (seed, batch index) in an evaluation."""
        if phase == "eval":
            self._eval_batches += 1
            counter = -self._eval_batches
        else:
            step, micro = self._transform_key
            micro = micro + 1 if step == self.state.global_step else 0
            self._transform_key = (self.state.global_step, micro)
            counter = self.state.global_step * self.args.gradient_accumulation_steps + micro
        key = (self.args.seed * 1_000_003 + self.args.process_index) * 1_000_000_007 + counter
        return key % (2**63 - 1)

    # ---- evaluation ------------------------------------------------------------------------------------------
    def prediction_step(self, model: nn.Module, inputs: dict[str, Any], prediction_loss_only: bool,
                        ignore_keys: list[str] | None = None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def evaluation_loop(self, dataloader, description: str, prediction_loss_only: bool | None = None,
                        ignore_keys: list[str] | None = None, metric_key_prefix: str = "eval") -> EvalLoopOutput:
        self._sums["eval"] = {}
        self._eval_batches = 0
        output = super().evaluation_loop(dataloader, description, True, ignore_keys, metric_key_prefix)
        terms = self._reduce("eval", LOGGED_METRICS)
        metrics = dict(output.metrics)
        metrics.update({f"{metric_key_prefix}_{name}": value for name, value in terms.items()})
        return EvalLoopOutput(predictions=None, label_ids=None, metrics=metrics, num_samples=output.num_samples)

    # ---- saving ------------------------------------------------------------------------------------------------
    def _save(self, output_dir: str | None = None, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """The Trainer's save, plus the plain `vit` encoder in ``encoder/`` for feature extraction (`save_encoder`)."""
        super()._save(output_dir, state_dict=state_dict)
        model = self.accelerator.unwrap_model(self.model)
        if isinstance(model, (ViTMAEWithMAGMA, ViTForSSL)) and self.args.should_save:
            save_encoder(model.config, state_dict if state_dict is not None else model.state_dict(),
                         output_dir if output_dir is not None else self.args.output_dir, self.processing_class)

    # ---- the probe's state in checkpoints --------------------------------------------------------------------
    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        self.keep_pending_window()
        self.mark_checkpoint(trial)
        # The probe's state goes in next: the Trainer writes `trainer_state.json` last, and a checkpoint with that
        # file is taken as complete when resuming (see `last_checkpoint`).
        if self.online_probe is not None and self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial), f"checkpoint-{self.state.global_step}")
            os.makedirs(folder, exist_ok=True)
            state = {"classifier": self.online_probe.classifier.state_dict(),
                     "optimizer": self.online_probe.optimizer.state_dict()}
            torch.save(state, os.path.join(folder, ONLINE_PROBE_FILE))
        super()._save_checkpoint(model, trial)

    def _load_weights(self, checkpoint: str, model: nn.Module | None = None) -> None:
        """Load a checkpoint's weights into ``model`` strictly, through `from_pretrained`.

        The Trainer loads `model.safetensors` with a non-strict `load_state_dict`, but ViT-MAE checkpoints are saved
        under transformers' legacy key names (`vit.encoder.layer.N...`), so that would silently keep the current
        weights. `from_pretrained` applies the key conversion; the copy is then loaded strictly.
        """
        target = self.accelerator.unwrap_model(model if model is not None else self.model)
        try:
            loaded = type(target).from_pretrained(checkpoint, config=copy.deepcopy(target.config))
        except (SafetensorError, OSError) as error:
            raise ValueError(
                f"Cannot read the weights in {checkpoint} ({type(error).__name__}: {error}): the file is damaged, "
                "e.g. by a run killed while saving. Move that checkpoint folder away to resume from the one before, "
                "or pass --resume_from_checkpoint with another checkpoint."
            ) from error
        except RuntimeError as error:
            if "mismatched_sizes" not in str(error):
                raise
            shapes = _shape_differences(checkpoint, target)
            raise ValueError(
                f"The weights in {checkpoint} do not fit the present model ({shapes}): a checkpoint loads only into "
                "a model of the same sizes (hidden_size, layers, heads, patch and image size), even with "
                "--ignore_resume_mismatch. Give the checkpoint's model settings to resume it, or a new --output_dir "
                "to train this model."
            ) from None
        target.load_state_dict(loaded.state_dict(), strict=True)

    def _load_best_model(self) -> None:
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            return super()._load_best_model()
        logger.info("Loading the best model from %s (score: %s)", self.state.best_model_checkpoint,
                    self.state.best_metric)
        self._load_weights(self.state.best_model_checkpoint)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            super()._load_from_checkpoint(resume_from_checkpoint, model)
        else:
            self._load_weights(resume_from_checkpoint, model)
        path = os.path.join(resume_from_checkpoint, ONLINE_PROBE_FILE)
        if self.online_probe is not None and os.path.isfile(path):
            state = torch.load(path, map_location=self.args.device, weights_only=True)
            self.online_probe.classifier.load_state_dict(state["classifier"])
            self.online_probe.optimizer.load_state_dict(state["optimizer"])
