"""Hooks: small objects the trainer calls at fixed points.

Hook points: ``before_train, before_epoch, after_step, after_eval, after_epoch, after_train``.
Each receives the trainer; ``after_step`` also the step's outputs, ``after_eval`` the metrics.
Hooks with state (e.g. the best score so far) implement ``state_dict``/``load_state_dict`` and are
saved in checkpoints, so a resumed run continues exactly.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from mlcls.datasets.bags import sample_unit
from mlcls.datasets.image_io import samples_for_display
from mlcls.datasets.protocols import LabelledDataset
from mlcls.engine.hook import Hook, Priority, TrainerView, scalar_metrics
from mlcls.evaluation import threshold_record, tune_thresholds
from mlcls.evaluation.functional import SUMMARY_KEYS
from mlcls.registry import HOOKS
from mlcls.utils.checkpoint import link_checkpoint
from mlcls.utils.cores import CoreShare
from mlcls.utils.dist import all_reduce, all_reduce_mean, get_world_size, is_main_process
from mlcls.utils.fileio import atomic_open
from mlcls.utils.misc import read_scalars, write_json
from mlcls.utils.plots import scored_grid

logger = logging.getLogger("mlcls")


class CoreShareHook(Hook):
    """Before each epoch, sets the training's compute threads to its share of the machine's cores
    (:class:`~mlcls.utils.cores.CoreShare`: trainings started or ended since change the share).
    Added by ``train_model``, not by configs."""

    priority = Priority.GUARD

    def __init__(self, share: CoreShare) -> None:
        self.share = share

    def before_epoch(self, trainer: TrainerView) -> None:
        self.share.adjust()


@HOOKS.register_module()
class CheckpointHook(Hook):
    """Writes ``latest.pth`` every epoch, ``epoch_N.pth`` every ``interval`` epochs and ``best.pth``.

    Args:
        interval: epochs between ``epoch_N.pth`` files (0: none).
        save_best: metric that picks ``best.pth`` (``null`` to disable).
        rule: ``greater`` or ``less``.
        max_keep_ckpts: keep only the newest N ``epoch_N.pth`` files (-1: all).
        interval_iters: also write ``latest.pth`` every N iterations inside an epoch (0: off), at
            optimizer-step boundaries; ``--resume`` continues from that batch exactly (the
            batches' augmentations are seeded by position, see ``SeededBatchSampler``).
    """

    priority = Priority.CHECKPOINT  # after logging and evaluation-driven hooks

    def __init__(
        self, interval: int = 1, save_best: str | None = "mAP", rule: str = "greater", max_keep_ckpts: int = -1, interval_iters: int = 0
    ) -> None:
        if rule not in ("greater", "less"):
            raise ValueError(f"CheckpointHook: rule must be 'greater' or 'less', got '{rule}'")
        self.interval = interval
        self.save_best = save_best
        self.rule = rule
        self.max_keep_ckpts = max_keep_ckpts
        self.interval_iters = int(interval_iters)
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self._pending_best = False

    def monitored_metrics(self) -> dict[str, str]:
        return {"CheckpointHook.save_best": self.save_best} if self.save_best else {}

    def after_eval(self, trainer: TrainerView, metrics: dict) -> None:
        if not self.save_best:
            return
        if self.save_best not in metrics:
            raise KeyError(f"CheckpointHook.save_best: metric '{self.save_best}' not among {sorted(scalar_metrics(metrics))}")
        score = float(metrics[self.save_best])
        if math.isnan(score):
            return
        better = self.best_score is None or (score > self.best_score if self.rule == "greater" else score < self.best_score)
        if better:
            self.best_score, self.best_epoch = score, trainer.epoch + 1
            self._pending_best = True

    def after_step(self, trainer: TrainerView, outputs: dict) -> None:
        if not (self.interval_iters and outputs.get("step_done") and trainer.iter % self.interval_iters == 0):
            return
        if trainer.inner_iter >= trainer.iters_per_epoch or not is_main_process():
            return  # the epoch's end writes latest.pth anyway
        trainer.save_checkpoint(Path(trainer.work_dir) / "latest.pth")

    def after_epoch(self, trainer: TrainerView) -> None:
        if not is_main_process():
            return
        work_dir = Path(trainer.work_dir)
        epoch = trainer.epoch  # epochs completed
        # One write per epoch; latest.pth and best.pth are hard links to it (no extra disk).
        if self.interval and epoch % self.interval == 0:
            written = work_dir / f"epoch_{epoch}.pth"
            trainer.save_checkpoint(written)
            link_checkpoint(written, work_dir / "latest.pth")
            if self.max_keep_ckpts > 0:
                old = epoch - self.max_keep_ckpts * self.interval
                (work_dir / f"epoch_{old}.pth").unlink(missing_ok=True)
        else:
            written = work_dir / "latest.pth"
            trainer.save_checkpoint(written)
        if self._pending_best:
            link_checkpoint(written, work_dir / "best.pth")
            logger.info("new best %s = %.2f at epoch %d -> best.pth", self.save_best, self.best_score, epoch)
            self._pending_best = False

    def state_dict(self) -> dict:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best_score = state.get("best_score")
        self.best_epoch = state.get("best_epoch")


def drop_records_after(path: Path, iteration: int) -> int:
    """Keep only the records of ``path`` (JSON lines with an ``iter``) up to ``iteration``, atomically.

    A run killed after its last checkpoint logged iterations that the resumed run replays; without
    this they would appear twice and the curves would describe two runs. Returns the number dropped.
    """
    if not path.is_file():
        return 0

    kept, dropped = [], 0
    for record in read_scalars(path):
        if record is None or int(record.get("iter", 0)) > iteration:  # None: a line cut off by the kill
            dropped += 1
        else:
            kept.append(json.dumps(record))
    if dropped:
        with atomic_open(path) as f:
            f.write("".join(k + "\n" for k in kept))
        logger.info(
            "%s: dropped %d records past iteration %d (logged after the checkpoint the run resumes from)", path.name, dropped, iteration
        )
    return dropped


@HOOKS.register_module()
class LoggerHook(Hook):
    """Progress bar, text log lines, ``scalars.jsonl`` and TensorBoard event files (rank 0 only).

    Args:
        interval: iterations between text log lines and TensorBoard points; shorter epochs use
            a quarter of the epoch instead, and the last iteration of each epoch is always logged.
        tensorboard: write TensorBoard events under ``<work_dir>/tb``.
        progress_bar: show a tqdm bar (``None``: only when stderr is a terminal).
        per_class: at each validation, per-class AP scalars and PR curves (``add_pr_curve``) in
            TensorBoard, for up to ``max_pr_curves`` classes.
        val_images: at each validation, a grid of the first N validation images with their true
            and predicted labels in TensorBoard (0: none).
    """

    priority = Priority.LOG

    #: what the throughput counts (img, exam or sample per second), set from the training set
    _unit = "img"

    def __init__(
        self,
        interval: int = 10,
        tensorboard: bool = True,
        progress_bar: bool | None = None,
        per_class: bool = True,
        max_pr_curves: int = 100,
        val_images: int = 16,
    ) -> None:
        self.interval = max(1, interval)
        self.val_images = val_images
        self.tensorboard = tensorboard
        self.per_class = per_class
        self.max_pr_curves = max_pr_curves
        self.progress_bar = progress_bar
        self.writer = None
        self.bar = None
        self._jsonl = None

    def before_train(self, trainer: TrainerView) -> None:
        # a short epoch still gets ~4 points (a 7-iteration epoch with interval 20 would get none);
        # the last iteration of every epoch is logged too (after_step)
        self.every = max(1, min(self.interval, -(-trainer.iters_per_epoch // 4)))
        self._last_logged = trainer.iter
        trainer.measure_grad_norm(self.every)  # on every rank: the norm is computed before the step
        if not is_main_process():
            return
        dataset = getattr(trainer.train_loader, "dataset", None)
        self._unit = sample_unit(bool(getattr(dataset, "bags", False)), getattr(dataset, "views", None))  # img/s or exam/s
        work_dir = Path(trainer.work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
        drop_records_after(work_dir / "scalars.jsonl", trainer.iter)
        self._jsonl = open(work_dir / "scalars.jsonl", "a", encoding="utf-8")
        if self.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(work_dir / "tb"), purge_step=trainer.iter or None)

    def _log(self, record: dict) -> None:
        if self._jsonl is not None:
            self._jsonl.write(json.dumps(record) + "\n")
            self._jsonl.flush()

    def before_epoch(self, trainer: TrainerView) -> None:
        self._t0 = self._t_last = time.perf_counter()
        if is_main_process():
            disable = None if self.progress_bar is None else not self.progress_bar
            self.bar = tqdm(
                total=trainer.iters_per_epoch,
                desc=f"epoch {trainer.epoch + 1}/{trainer.max_epochs}",
                disable=disable,
                dynamic_ncols=True,
                leave=False,
            )

    def after_step(self, trainer: TrainerView, outputs: dict) -> None:
        # the loss is read on the host only at logging steps: reading it every step would wait for
        # the device each step (a sync that drains the GPU's launch queue)
        log_now = trainer.iter % self.every == 0 or trainer.inner_iter == trainer.iters_per_epoch
        if self.bar is not None:
            self.bar.update(1)
        if not log_now:
            return
        loss_t = all_reduce_mean(outputs["loss"].float())  # every rank takes part; rank 0 logs the global mean
        if not is_main_process():
            return
        loss = float(loss_t)
        lr = trainer.current_lr()
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", data=f"{outputs.get('data_time', 0):.3f}s", refresh=False)
        now = time.perf_counter()
        ips = (trainer.iter - self._last_logged) * trainer.batch_size * get_world_size() / max(now - self._t_last, 1e-9)
        self._t_last, self._last_logged = now, trainer.iter
        inner = (trainer.iter - 1) % trainer.iters_per_epoch + 1
        logger.info(
            "epoch %d [%d/%d] loss %.4f lr %.3e data %.3fs %.1f %s/s",
            trainer.epoch + 1,
            inner,
            trainer.iters_per_epoch,
            loss,
            lr,
            outputs.get("data_time", 0.0),
            ips,
            self._unit,
        )
        record = {"mode": "train", "epoch": trainer.epoch + 1, "iter": trainer.iter, "loss": loss, "lr": lr}
        if "grad_norm" in outputs:
            record["grad_norm"] = float(outputs["grad_norm"])
        self._log(record)
        if self.writer is not None:
            self.writer.add_scalar("train/loss", loss, trainer.iter)
            self.writer.add_scalar("train/lr", lr, trainer.iter)
            if "grad_norm" in outputs:
                self.writer.add_scalar("train/grad_norm", float(outputs["grad_norm"]), trainer.iter)

    def after_eval(self, trainer: TrainerView, metrics: dict) -> None:
        if not is_main_process():
            return
        scalars = scalar_metrics(metrics)
        summary = " ".join(f"{k} {scalars[k]:.2f}" for k in SUMMARY_KEYS if k in scalars)
        skipped = metrics.get("num_classes_skipped", 0)
        logger.info(
            "epoch %d val: %s%s", trainer.epoch + 1, summary, f" ({skipped} classes without positives skipped in mAP)" if skipped else ""
        )
        self._log({"mode": "val", "epoch": trainer.epoch + 1, "iter": trainer.iter, **scalars})
        if self.writer is not None:
            step = trainer.epoch + 1
            for k, v in scalars.items():
                self.writer.add_scalar(f"val/{k}", v, step)
            classes = trainer.meta.get("classes") or [str(i) for i in range(len(metrics.get("AP", [])))]
            if self.per_class and classes:
                for name, ap in zip(classes, metrics.get("AP", [])):
                    if not math.isnan(ap):
                        self.writer.add_scalar(f"val_AP/{name}", ap, step)
                if trainer.last_eval is not None:
                    scores, targets = trainer.last_eval
                    for c, name in enumerate(classes[: self.max_pr_curves]):
                        valid = targets[:, c] >= 0
                        self.writer.add_pr_curve(f"val_pr/{name}", targets[valid, c] > 0.5, scores[valid, c], step)
            self._image_grid(trainer, step)
            self.writer.flush()

    def _image_grid(self, trainer: TrainerView, step: int) -> None:
        dataset = getattr(trainer.val_loader, "dataset", None)
        if not self.val_images or trainer.last_eval is None or not isinstance(dataset, LabelledDataset):
            return
        if dataset.bags:  # a sample is a series of images: no single picture to show
            logger.info("LoggerHook: no validation image grid for samples made of many images")
            self.val_images = 0
            return

        k = min(self.val_images, len(dataset))
        thr = trainer.evaluator.thr
        try:
            images, targets = samples_for_display(dataset, range(k))
            grid = scored_grid(images, targets, trainer.last_eval[0][:k].numpy(), thr, dataset.classes, title=f"epoch {step}")
        except Exception as e:  # noqa: BLE001 - a picture must never stop training (e.g. an unreadable image)
            logger.warning("LoggerHook: validation image grid disabled: %s", e)
            self.val_images = 0
            return
        self.writer.add_image("val/predictions", grid, step, dataformats="HWC")

    def after_epoch(self, trainer: TrainerView) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        dataset = trainer.train_loader.dataset
        bad = dataset.num_bad_images if isinstance(dataset, LabelledDataset) else 0  # a plain torch dataset skips nothing
        if get_world_size() > 1:  # every rank takes part: each has met its own share of the data
            bad = int(all_reduce(torch.tensor([bad], dtype=torch.long)))
        if is_main_process():
            skipped = f", {bad} unreadable image(s) skipped so far (on_bad_image=skip)" if bad else ""
            logger.info("epoch %d done in %.1fs%s", trainer.epoch, time.perf_counter() - self._t0, skipped)
            self._log(
                {"mode": "epoch", "epoch": trainer.epoch, "iter": trainer.iter, "time": time.perf_counter() - self._t0, "bad_images": bad}
            )

    def after_train(self, trainer: TrainerView) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None


@HOOKS.register_module()
class ThresholdTuningHook(Hook):
    """Tunes per-class thresholds on every validation's predictions (see ``tune_thresholds``).

    Runs before the checkpoint hook, so each checkpoint written after a validation (latest, best)
    carries the thresholds that fit its own weights; ``tools/test.py`` and inference use them by
    default. Also writes ``<work_dir>/thresholds.json``.

    Args:
        objective: ``f1``, ``precision`` or ``recall``.
        target: the precision/recall goal for those objectives.
        min_pos: classes with fewer validation positives use the global micro-F1 threshold.
    """

    priority = Priority.TUNE  # after logging, before CheckpointHook

    def __init__(self, objective: str = "f1", target: float | None = None, min_pos: int = 5) -> None:
        self.objective, self.target, self.min_pos = objective, target, min_pos

    def after_eval(self, trainer: TrainerView, metrics: dict) -> None:
        if trainer.last_eval is None:
            return
        thr, info = tune_thresholds(*trainer.last_eval, objective=self.objective, target=self.target, min_pos=self.min_pos)
        record = threshold_record(thr, info, trainer.meta.get("classes") or [], "val", epoch=trainer.epoch + 1)
        trainer.set_thresholds(record)
        if is_main_process():
            write_json(record, Path(trainer.work_dir) / "thresholds.json")


@HOOKS.register_module()
class CollapseGuardHook(Hook):
    """Warns when validation outputs have collapsed, the failure where every output sticks at ~0.5 while the loss still falls.

    Checks every validation's probabilities [N, C]: a class whose scores barely vary across
    images (std < ``min_std``) carries no information; when at least ``max_fraction`` of classes
    do, or no class is predicted positive at the evaluation threshold for any image, or every
    class is predicted for every image, it logs one warning with per-class statistics and the
    usual causes. The check result is also added to the validation metrics as ``collapsed`` (0/1).
    """

    priority = Priority.GUARD  # before LoggerHook, so the 'collapsed' flag is logged with the metrics

    CAUSES = (
        "learning rate far too high or too low; backbone frozen with a head that cannot learn; a loss "
        "reduced over the batch axis or applied to probabilities instead of logits; inputs not "
        "normalised (uint8 0-255 into the network); imbalance with plain BCE at threshold 0.5 "
        "(try pos_weight: auto, ASL, or tuned thresholds)"
    )

    def __init__(self, min_std: float = 1e-3, max_fraction: float = 0.9, show: int = 10) -> None:
        self.min_std, self.max_fraction, self.show = min_std, max_fraction, show

    def after_eval(self, trainer: TrainerView, metrics: dict) -> None:
        if trainer.last_eval is None:
            return

        scores, targets = trainer.last_eval
        if scores.numel() == 0:
            return
        thr = torch.as_tensor(trainer.evaluator.thr, dtype=scores.dtype)
        std = scores.std(dim=0, unbiased=False)
        predicted = (scores >= thr).float()
        flat = std < self.min_std
        problems = []
        if flat.float().mean() >= self.max_fraction:
            problems.append(f"{int(flat.sum())}/{scores.shape[1]} classes have nearly constant scores (std < {self.min_std:g})")
        if predicted.sum() == 0:
            problems.append("no class is predicted positive for any image at the evaluation threshold")
        elif predicted.mean() == 1:
            problems.append("every class is predicted positive for every image")
        trainer.put_metric("collapsed", int(bool(problems)))
        if not problems or not is_main_process():
            return
        classes = trainer.meta.get("classes") or [str(c) for c in range(scores.shape[1])]
        valid = targets >= 0
        freq = ((targets > 0.5) & valid).float().sum(0) / valid.float().sum(0).clamp(min=1)
        rows = [f"  {'class':<16} {'mean':>7} {'std':>8} {'max':>7} {'pred%':>6} {'true%':>6}"]
        for c in range(min(self.show, scores.shape[1])):
            rows.append(
                f"  {classes[c][:16]:<16} {float(scores[:, c].mean()):7.4f} {float(std[c]):8.2e} "
                f"{float(scores[:, c].max()):7.4f} {100 * float(predicted[:, c].mean()):6.1f} {100 * float(freq[c]):6.1f}"
            )
        logger.warning(
            "epoch %d: model outputs look collapsed: %s.\n%s\nLikely causes: %s",
            trainer.epoch + 1, "; ".join(problems), "\n".join(rows), self.CAUSES,
        )  # fmt: skip


@HOOKS.register_module()
class EarlyStoppingHook(Hook):
    """Stops training when ``monitor`` has not improved by ``min_delta`` for ``patience`` validations.

    Args:
        monitor: a validation metric (e.g. ``mAP``).
        patience: validations without improvement before stopping.
        rule: ``greater`` or ``less``.
        min_delta: the smallest change that counts as an improvement.
    """

    priority = Priority.STOP  # after the checkpoint of the epoch is written

    def __init__(self, monitor: str = "mAP", patience: int = 5, rule: str = "greater", min_delta: float = 0.0) -> None:
        if rule not in ("greater", "less"):
            raise ValueError(f"EarlyStoppingHook: rule must be 'greater' or 'less', got '{rule}'")
        self.monitor, self.patience, self.rule, self.min_delta = monitor, int(patience), rule, float(min_delta)
        self.best: float | None = None
        self.bad = 0

    def monitored_metrics(self) -> dict[str, str]:
        return {"EarlyStoppingHook.monitor": self.monitor}

    def after_eval(self, trainer: TrainerView, metrics: dict) -> None:
        if self.monitor not in metrics:
            raise KeyError(f"EarlyStoppingHook.monitor: metric '{self.monitor}' not among {sorted(scalar_metrics(metrics))}")
        score = float(metrics[self.monitor])
        sign = 1.0 if self.rule == "greater" else -1.0
        if self.best is None or (not math.isnan(score) and sign * (score - self.best) > self.min_delta):
            self.best, self.bad = score, 0
            return
        self.bad += 1
        if self.bad >= self.patience:
            trainer.request_stop(f"early stopping: {self.monitor} has not improved on {self.best:.4f} for {self.bad} validations")

    def state_dict(self) -> dict:
        return {"best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.bad = state.get("best"), int(state.get("bad", 0))


def build_hooks(cfgs: list[dict] | None) -> list[Hook]:
    return [HOOKS.build(c) for c in cfgs or []]


__all__: list[Any] = [
    "Hook", "Priority", "CheckpointHook", "LoggerHook", "ThresholdTuningHook", "CollapseGuardHook", "EarlyStoppingHook",
    "build_hooks", "scalar_metrics",
]  # fmt: skip
