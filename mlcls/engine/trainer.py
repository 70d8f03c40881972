"""The training loop, built from ready objects (no config needed; see ``mlcls.apis`` for that)."""

from __future__ import annotations

import contextlib
import difflib
import logging
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from mlcls import __version__
from mlcls.datasets.builder import set_loader_epoch
from mlcls.datasets.labels import first_difference
from mlcls.engine.ema import ModelEMA
from mlcls.engine.hook import Hook
from mlcls.errors import CheckpointError, ConfigError, TrainingError
from mlcls.evaluation.loop import batch_to_device, loader_batch_transform, predict_loader
from mlcls.evaluation.metrics import Evaluator, MultiLabelMetric
from mlcls.losses.utils import EpochAware, SampleIndexed, TrainingState
from mlcls.registry import check_part
from mlcls.utils.checkpoint import load_checkpoint, save_checkpoint, state_mismatch
from mlcls.utils.dist import get_rank
from mlcls.utils.misc import get_rng_state, set_random_seed, set_rng_state

logger = logging.getLogger("mlcls")


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


class Trainer:
    """Epoch-based trainer for models with ``forward(images, targets, mode='loss'|'predict')``.

    Args:
        model: the model (already on ``device``; wrapped in DDP by the caller under torchrun).
        optimizer: its optimizer.
        train_loader: yields ``(images [B, 3, H, W], targets [B, C])``.
        max_epochs: epochs to train.
        scheduler: lr scheduler stepped once per optimizer step.
        val_loader: evaluated every ``val_interval`` epochs and after the last one.
        evaluator: accumulator with ``reset/process/compute`` (default :class:`MultiLabelMetric`).
        hooks: :class:`Hook` objects (logging, checkpoints, ...).
        work_dir: where hooks write files.
        device: torch device.
        amp: autocast (fp16 with a GradScaler on CUDA, bf16 on CPU).
        accumulate: optimizer step every N batches (gradient accumulation).
        grad_clip: max global gradient norm (None: no clipping).
        seed: base seed; each epoch reseeds python/numpy/torch with ``seed + epoch`` (and a
            :class:`SeededBatchSampler` seeds each batch's augmentations by position), so a run
            resumed at an epoch boundary, or mid-epoch from an ``interval_iters`` checkpoint,
            replays exactly.
        meta: plain data stored in every checkpoint (config, class names, ...).
        ema: a :class:`ModelEMA` updated after every optimizer step.
        val_weights: which weights validation scores when ``ema`` is set: ``ema``, ``raw`` or
            ``both`` (EMA metrics drive best.pth; raw ones are logged with a ``raw_`` prefix).
        channels_last: NHWC memory format for model and inputs (faster convolutions on many CPUs/GPUs).
        skip_nonfinite: skip up to this many steps whose loss is NaN/inf before stopping.
        batch_augments: a :class:`~mlcls.engine.batch_augments.BatchAugments` (Mixup/CutMix)
            applied to each training batch, its draws seeded by the global iteration.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        train_loader: DataLoader,
        max_epochs: int,
        *,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        val_loader: DataLoader | None = None,
        evaluator: Evaluator | None = None,
        val_interval: int = 1,
        hooks: Sequence[Hook] = (),
        work_dir: str | Path = "work_dirs/run",
        device: str | torch.device = "cpu",
        amp: bool = False,
        accumulate: int = 1,
        grad_clip: float | None = None,
        seed: int = 0,
        meta: dict | None = None,
        ema: ModelEMA | None = None,
        val_weights: str = "ema",
        channels_last: bool = False,
        skip_nonfinite: int = 0,
        batch_augments=None,
    ) -> None:
        if val_weights not in ("ema", "raw", "both"):
            raise ValueError(f"val_weights must be 'ema', 'raw' or 'both', got '{val_weights}'")
        self.model = model
        self.optimizer = optimizer
        self.train_loader = train_loader
        self.max_epochs = int(max_epochs)
        self.scheduler = scheduler
        self.val_loader = val_loader
        self.evaluator = evaluator or MultiLabelMetric()
        check_part(self.evaluator, Evaluator, "evaluator")
        self.val_interval = max(1, int(val_interval))
        self.hooks = sorted(hooks, key=lambda h: h.priority)
        self.work_dir = Path(work_dir)
        self.device = torch.device(device)
        self.amp = amp
        self.amp_dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=amp and self.device.type == "cuda")
        self.accumulate = max(1, int(accumulate))
        self.grad_clip = grad_clip
        self.seed = seed
        self.meta = dict(meta or {})
        self.epoch = 0  # epochs completed
        self.iter = 0  # batches processed
        self.val_metrics: dict = {}
        self.last_eval: tuple[torch.Tensor, torch.Tensor] | None = None
        self.thresholds: dict | None = None  # per-class thresholds (a hook's set_thresholds)
        self.ema = ema
        self.val_weights = val_weights if ema is not None else "raw"
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
            if ema is not None:
                ema.module.to(memory_format=torch.channels_last)
        self.skip_nonfinite = int(skip_nonfinite)
        self.nonfinite_steps = 0  # skipped steps acted on so far (see _poll_nonfinite)
        # counted on the device, read without a sync (see _step_unless_poisoned and _poll_nonfinite)
        self._bad_losses = torch.zeros((), dtype=torch.int64, device=self.device)
        self._skipped_steps = torch.zeros((), dtype=torch.int64, device=self.device)
        self._pending = None
        # a fused optimizer (Adam, AdamW, SGD with fused=True) skips a step from a flag tensor inside its kernel
        self.scaler_free_skip = all(g.get("fused") for g in optimizer.param_groups)
        # on CUDA the counts are read once the device has reached them, never by waiting for it
        self._async_counts = self.device.type == "cuda"
        self.stop_reason: str | None = None  # a hook's request_stop: end after the current epoch
        self.grad_norm_interval = 0  # a hook's measure_grad_norm: the grad norm every N iterations
        self.inner_iter = 0  # batches done in the current epoch (non-zero only mid-epoch)
        self.batch_augments = batch_augments
        # losses that change during training (declared interfaces, see mlcls.losses.utils), by module name
        modules = dict(unwrap(model).named_modules())
        self.epoch_aware = [m for m in modules.values() if isinstance(m, EpochAware)]
        self.indexed = [m for m in modules.values() if isinstance(m, SampleIndexed) and m.uses_sample_index]
        self.loss_states = {name: m for name, m in modules.items() if isinstance(m, TrainingState)}

    # -- the loop ----------------------------------------------------------------------------------
    @property
    def iters_per_epoch(self) -> int:
        return len(self.train_loader)

    @property
    def batch_size(self) -> int:
        return self.train_loader.batch_size or getattr(self.train_loader.batch_sampler, "batch_size", 1)

    def current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def call_hooks(self, name: str, *args) -> None:
        for h in self.hooks:
            getattr(h, name)(self, *args)

    # -- what hooks may change (mlcls.engine.hook.TrainerView) -------------------------------------
    def request_stop(self, reason: str) -> None:
        if self.stop_reason is None:
            logger.info("%s: training stops after epoch %d", reason, self.epoch + 1)
        self.stop_reason = reason

    def set_thresholds(self, record: dict) -> None:
        self.thresholds = record

    def measure_grad_norm(self, every: int) -> None:
        self.grad_norm_interval = max(0, int(every))

    def put_metric(self, name: str, value: float) -> None:
        self.val_metrics[name] = value

    def check_monitored_metrics(self) -> None:
        """Every metric a hook monitors (``save_best``, ``monitor``) must be one validation reports:
        a typo is an error now, with a suggestion, not a KeyError after the first epoch."""
        wanted = {k: v for h in self.hooks for k, v in h.monitored_metrics().items()}
        if not wanted or self.val_loader is None:
            return
        names = set(self.evaluator.metric_names())  # declared by the evaluator (tests check it is what compute returns)
        if self.val_weights == "both":
            names |= {f"raw_{k}" for k in names}
        for option, name in wanted.items():
            if name not in names:
                close = difflib.get_close_matches(str(name), names, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise ConfigError(f"{option}: '{name}' is not a validation metric{hint} (available: {', '.join(sorted(names))})")

    def train(self) -> dict:
        """Train from ``self.epoch`` to ``max_epochs``; returns the last validation metrics."""
        self.check_monitored_metrics()
        self.call_hooks("before_train")
        while self.epoch < self.max_epochs:
            self.call_hooks("before_epoch")
            self.train_one_epoch()
            last = self.epoch + 1 == self.max_epochs
            if self.val_loader is not None and ((self.epoch + 1) % self.val_interval == 0 or last):
                self.val_metrics = self.evaluate(self.val_loader)
                self.call_hooks("after_eval", self.val_metrics)
            self.epoch += 1
            self.call_hooks("after_epoch")
            if self.stop_reason is not None:
                break
        self.call_hooks("after_train")
        return self.val_metrics

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp else contextlib.nullcontext()

    def train_one_epoch(self) -> None:
        # Everything random in an epoch derives from (seed, epoch): the sampler's shuffle, the
        # augmentation seeds (per batch with SeededBatchSampler, else the loader's generator) and
        # main-process RNGs (dropout). After a mid-epoch resume, ``inner_iter`` batches are
        # already done: they are not drawn again and the RNGs come from the checkpoint instead.
        start = self.inner_iter
        if start == 0:
            set_random_seed(self.seed + self.epoch)
        set_loader_epoch(self.train_loader, self.epoch, skip=start)
        if self.train_loader.generator is not None:
            # per rank, so processes do not draw the same augmentations (the sampler's order is
            # seeded separately and identically on every rank)
            self.train_loader.generator.manual_seed(self.seed + self.epoch + 100003 * get_rank())
        for m in self.epoch_aware:  # the epoch a changing loss is in, counted from 0 (before any batch of it)
            m.set_epoch(self.epoch)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        n = self.iters_per_epoch
        loss = None
        t_data = time.perf_counter()
        batch_transform = loader_batch_transform(self.train_loader)
        for i, (images, targets, *index) in enumerate(self.train_loader, start=start):
            # the step evaluation shares: copy, channels-last, uint8 normalised once on the device
            images, targets = batch_to_device(images, targets, self.device, self.memory_format, batch_transform)
            for m in self.indexed:  # a loss with per-sample state: which training samples this batch holds
                m.set_sample_index(index[0] if index else None)
            if self.batch_augments is not None:  # Mixup/CutMix: drawn from (seed, rank, iteration), so resume replays them
                images, targets = self.batch_augments(images, targets, self.iter)
            data_time = time.perf_counter() - t_data
            step_now = (i + 1) % self.accumulate == 0 or i + 1 == n
            # With accumulation under DDP, skip the gradient all-reduce until the last micro-batch.
            sync = self.model.no_sync() if (not step_now and hasattr(self.model, "no_sync")) else contextlib.nullcontext()
            with sync:
                with self._autocast():
                    losses = self.model(images, targets, mode="loss")
                loss = losses["loss"]
                # A non-finite loss poisons this rank's gradients (all NaN); under DDP the gradient
                # all-reduce spreads the poison, so every rank finds it at the optimizer step and skips
                # that step alike. No collective and no host-device sync of its own: x 1.0 is exact.
                finite = torch.isfinite(loss.detach())
                self._bad_losses += ~finite
                poison = torch.where(finite, 1.0, float("nan")).to(loss.dtype)
                self.scaler.scale(loss * poison / self.accumulate).backward()
            outputs = {"loss": loss.detach(), "data_time": data_time}
            if step_now:
                # the global grad norm: needed to clip, and measured at logging steps for TensorBoard
                log_norm = self.grad_norm_interval and (self.iter + 1) % self.grad_norm_interval == 0
                if self.grad_clip or log_norm:
                    outputs["grad_norm"] = self._grad_norm()
                self._step_unless_poisoned()
                self.optimizer.zero_grad(set_to_none=True)
                if self.scheduler is not None:
                    self.scheduler.step()
                if self.ema is not None:
                    self.ema.update(unwrap(self.model))
            self.iter += 1
            self.inner_iter = i + 1
            self._poll_nonfinite(loss, i)  # this step's count on CPU; on CUDA the newest one the device has finished
            outputs["step_done"] = step_now  # an optimizer-step boundary: a safe point to checkpoint
            self.call_hooks("after_step", outputs)
            t_data = time.perf_counter()
        if loss is not None:
            self._poll_nonfinite(loss, n - 1, wait=True)  # the epoch's last steps, before its checkpoint
        self.inner_iter = 0

    def _grad_norm(self) -> torch.Tensor:
        """Unscale the gradients (AMP), then clip them to ``grad_clip`` or only measure their global norm."""
        self.scaler.unscale_(self.optimizer)
        if self.grad_clip:
            return nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        norms = [torch.linalg.vector_norm(p.grad) for p in self.model.parameters() if p.grad is not None]
        return torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())

    def _step_unless_poisoned(self) -> None:
        """The optimizer step, skipped when the gradients are poisoned (a non-finite loss on any rank).

        fp16 AMP: the GradScaler finds non-finite gradients itself (overflow or poison) and skips.
        Otherwise one gradient element tells (poison makes every gradient NaN): a fused optimizer
        (``fused=True``) takes the flag as a tensor and skips inside its kernel, without a host-device
        sync; any other optimizer reads the flag once per optimizer step (free on CPU, a sync on CUDA).
        """
        if self.scaler.is_enabled():
            self.scaler.step(self.optimizer)
            self.scaler.update()
            return
        sentinel = next((p.grad for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None), None)
        if sentinel is None:
            return
        found = ~torch.isfinite(sentinel.reshape(-1)[0])
        if self.scaler_free_skip:
            self._skipped_steps += found
            self.optimizer.grad_scale, self.optimizer.found_inf = None, found.float()
            try:
                self.optimizer.step()
            finally:
                del self.optimizer.grad_scale, self.optimizer.found_inf
        elif not bool(found):
            self.optimizer.step()
        else:
            self._skipped_steps += 1

    def _poll_nonfinite(self, loss: torch.Tensor, i: int, wait: bool = False) -> None:
        """Act on the non-finite losses counted on the device: log each skipped step, stop past the limit.

        The count is read without stalling the device: on CUDA a copy queued after each step is
        read once the device has reached it (one or a few steps late; ``wait`` at the epoch's end).
        The steps themselves were already skipped on the device, so acting late costs nothing.
        """
        count = self._bad_losses if self.scaler.is_enabled() else self._skipped_steps  # fp16: this rank's losses
        if self._async_counts:
            if self._pending is None:
                host = count.to("cpu", non_blocking=True)
                event = torch.cuda.Event()
                event.record()
                self._pending = (event, host, loss.detach(), i, self.iter)
            event, host, bad_loss, at, global_iter = self._pending
            if not (wait or event.query()):
                return
            event.synchronize()
            self._pending = None
            seen = int(host)
        else:
            seen, bad_loss, at, global_iter = int(count), loss.detach(), i, self.iter
        if seen <= self.nonfinite_steps:
            return
        self.nonfinite_steps = seen
        where = f"epoch {self.epoch + 1}, iteration {at + 1}/{self.iters_per_epoch} (global {global_iter})"
        if self.nonfinite_steps <= self.skip_nonfinite:
            logger.warning("non-finite loss at %s: step skipped (%d of %d allowed)", where, self.nonfinite_steps, self.skip_nonfinite)
            return
        latest = self.work_dir / "latest.pth"
        kept = f"the last good checkpoint {latest} is intact" if latest.is_file() else "no checkpoint was written yet"
        value = f"{float(bad_loss):.4g}" if not torch.isfinite(bad_loss) else "non-finite on another rank"
        raise TrainingError(
            f"loss is {value} at {where}; training stopped and {kept}. Likely causes: learning "
            f"rate too high (now {self.current_lr():.3g}), a loss/optimizer eps too small, fp16 overflow "
            "under AMP, or NaN/inf in the inputs or targets. Lower the lr, add train_cfg.grad_clip, or set "
            "train_cfg.skip_nonfinite: N to skip up to N such steps"
        )

    def predict(self, loader: DataLoader, model: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores [N, C] and targets [N, C] for ``loader``, gathered over ranks in dataset order (None when
        the evaluator is class-sharded under DDP: see ``MultiLabelMetric(gather="classes")``)."""
        return predict_loader(unwrap(model or self.model), loader, self.evaluator, self.device, self._autocast, self.memory_format)

    def evaluate(self, loader: DataLoader) -> dict:
        """Metrics of :attr:`evaluator` over ``loader`` (every rank gets the same dict).

        With EMA, the weights named by ``val_weights`` are scored (``both``: EMA, plus the raw
        weights' scalars under ``raw_<name>``). The gathered scores and targets of the main
        weights stay in :attr:`last_eval` for hooks (PR curves, thresholds, guards).
        """
        main = self.ema.module if self.val_weights in ("ema", "both") else self.model
        self.last_eval = self.predict(loader, main)
        # None: class-sharded under DDP; no rank holds the scores, hooks that need them skip
        metrics = self.evaluator.compute() if self.last_eval is None else self.evaluator.evaluate(*self.last_eval)
        if self.val_weights == "both":
            raw_eval = self.predict(loader, self.model)
            raw = self.evaluator.compute() if raw_eval is None else self.evaluator.evaluate(*raw_eval)
            metrics.update({f"raw_{k}": v for k, v in raw.items() if isinstance(v, (int, float))})
        return metrics

    # -- checkpoints -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "meta": {
                **self.meta,
                "mlcls_version": __version__,
                "epoch": self.epoch,
                "iter": self.iter,
                "seed": self.seed,
                "inner_iter": self.inner_iter,  # > 0: saved mid-epoch, after this many batches of epoch + 1
                # which weights validation (and so thresholds and best.pth) used; test/inference load those
                "eval_weights": "ema" if self.val_weights in ("ema", "both") else "raw",
            },  # fmt: skip
            "state_dict": unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "hooks": {key: h.state_dict() for key, h in zip(self.hook_keys(), self.hooks)},
            "rng": get_rng_state(),
            **({"ema": self.ema.state_dict()} if self.ema is not None else {}),
            **({"thresholds": self.thresholds} if self.thresholds else {}),
            # the last validation's metrics: a run resumed when already complete still returns them
            **({"val_metrics": plain(self.val_metrics)} if self.val_metrics else {}),
            **({"loss_state": {name: m.training_state() for name, m in self.loss_states.items()}} if self.loss_states else {}),
        }

    def hook_keys(self) -> list[str]:
        """A checkpoint key per hook: its class name, numbered from the second of a class on
        (``CheckpointHook``, ``CheckpointHook#2``), so two hooks of one class keep their own state."""
        seen: dict[str, int] = {}
        keys = []
        for h in self.hooks:
            name = type(h).__name__
            seen[name] = seen.get(name, 0) + 1
            keys.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
        return keys

    def save_checkpoint(self, path: str | Path) -> None:
        save_checkpoint(self.state_dict(), path)

    def resume(self, path: str | Path) -> None:
        """Restore model, optimizer, scheduler, scaler, hooks, RNG, epoch and iteration."""
        ckpt = load_checkpoint(path, map_location=self.device)
        for key in ("state_dict", "optimizer"):
            if key not in ckpt:
                raise CheckpointError(f"{path}: no '{key}' entry; it cannot be resumed from")
        problem = self.resume_mismatch(ckpt)
        if problem:  # checked before anything is loaded or written: the run is left as it was
            raise ConfigError(
                f"--resume: {path} does not fit this config: {problem}. To start from its weights with the new config, "
                f"set load_from: {path} and use a new --work-dir; to start this run again, use --overwrite"
            )
        unwrap(self.model).load_state_dict(ckpt["state_dict"])
        fresh_lrs = [g["lr"] for g in self.optimizer.param_groups]  # the new schedule's step-0 values
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.epoch = int(ckpt["meta"]["epoch"])
        self.iter = int(ckpt["meta"]["iter"])
        self.inner_iter = int(ckpt["meta"].get("inner_iter", 0))
        if self.scheduler is not None:
            if ckpt.get("scheduler") and ckpt["meta"].get("schedule") == self.meta.get("schedule"):
                self.scheduler.load_state_dict(ckpt["scheduler"])
            else:
                # The schedule changed (e.g. max_epochs raised to train longer): the saved state
                # describes the old one. Replay the new schedule up to the current step instead.
                steps = self.epoch * -(-self.iters_per_epoch // self.accumulate) + self.inner_iter // self.accumulate
                old = (ckpt["meta"].get("schedule") or {}).get("max_epochs")
                if old is not None and old != self.max_epochs:
                    logger.warning(
                        "the checkpoint's run was planned for %d epochs, this config asks for %d: training continues to epoch %d "
                        "with the lr schedule recomputed for %d epochs (and replayed to step %d). To finish the run as planned, "
                        "resume with --cfg-options train_cfg.max_epochs=%d",
                        old, self.max_epochs, self.max_epochs, self.max_epochs, steps, old,
                    )  # fmt: skip
                else:
                    logger.warning(
                        "the lr schedule in this config differs from the checkpoint's: the new one is used, replayed to step %d", steps
                    )
                for g, lr in zip(self.optimizer.param_groups, fresh_lrs):
                    g["lr"] = lr  # torch schedulers step recursively from the current lr
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()"
                    for _ in range(steps):
                        self.scheduler.step()
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema is not None:
            if "ema" in ckpt:
                self.ema.load_state_dict(ckpt["ema"])
            else:
                logger.warning("%s holds no EMA weights; EMA restarts from the resumed weights", path)
                self.ema.module.load_state_dict(unwrap(self.model).state_dict())
        for key, h in zip(self.hook_keys(), self.hooks):
            h.load_state_dict(ckpt.get("hooks", {}).get(key, {}))
        for name, m in self.loss_states.items():  # corrected labels, estimated priors: the run continues with them
            m.load_training_state((ckpt.get("loss_state") or {}).get(name, {}))
        if ckpt.get("rng"):
            set_rng_state(ckpt["rng"])
        self.thresholds = ckpt.get("thresholds")
        self.val_metrics = dict(ckpt.get("val_metrics") or {})
        where = f", batch {self.inner_iter} of epoch {self.epoch + 1}" if self.inner_iter else ""
        logger.info("resumed from %s at epoch %d (iteration %d%s)", path, self.epoch, self.iter, where)

    def resume_mismatch(self, ckpt: dict) -> str | None:
        """What keeps ``ckpt`` from being resumed by this trainer (class list, model, optimizer), or None."""
        meta = ckpt.get("meta") or {}
        old_classes, new_classes = meta.get("classes"), self.meta.get("classes")
        diff = first_difference(old_classes, new_classes) if old_classes is not None and new_classes is not None else None
        if diff is not None:
            i, old_name, new_name = diff
            return (
                f"the class list differs ({len(old_classes)} classes in the checkpoint, {len(new_classes)} now; first difference at "
                f"index {i}: {old_name!r} vs {new_name!r})"
            )
        problem = state_mismatch(unwrap(self.model).state_dict(), ckpt["state_dict"])
        if problem:
            return f"the model differs: {problem}"
        old_opt = ((meta.get("config") or {}).get("optimizer") or {}).get("type")
        new_opt = type(self.optimizer).__name__
        saved_keys = {k for g in ckpt["optimizer"].get("param_groups", []) for k in g if k != "params"}
        own_keys = {k for g in self.optimizer.param_groups for k in g if k != "params"}
        if (old_opt is not None and old_opt != new_opt) or (saved_keys and not saved_keys <= own_keys | {"initial_lr"}):
            return f"the optimizer differs ({old_opt or 'another type'} in the checkpoint, {new_opt} now)"
        if len(ckpt["optimizer"].get("param_groups", [])) != len(self.optimizer.param_groups):
            return (
                f"the optimizer has {len(self.optimizer.param_groups)} parameter groups now, "
                f"{len(ckpt['optimizer']['param_groups'])} in the checkpoint (another lr decay or weight-decay setting?)"
            )
        return None


def plain(value):
    """Metrics as plain Python numbers, lists and dicts (what a ``weights_only`` checkpoint load accepts)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return plain(value.tolist())
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
