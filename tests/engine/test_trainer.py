"""The trainer on real (tiny) image files: smoke run, logs read back, exact resume, schedules."""

import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mlcls.apis import build_trainer, train_model
from mlcls.engine import Hook, build_optimizer, build_scheduler
from mlcls.errors import ConfigError
from mlcls.registry import HOOKS
from mlcls.utils.checkpoint import load_checkpoint


def test_two_epoch_training_writes_checkpoints_and_logs(make_config, tmp_path):
    cfg = make_config(tmp_path / "run")
    cfg["default_hooks"]["logger"].update(tensorboard=True, val_images=16)  # the tiny config leaves them out (time)
    metrics = train_model(cfg)
    wd = tmp_path / "run"
    for name in ("epoch_1.pth", "epoch_2.pth", "latest.pth", "best.pth", "config.yaml", "train.log", "scalars.jsonl"):
        assert (wd / name).is_file(), name
    # latest.pth is the last epoch's file and best.pth the best epoch's, as hard links: no extra disk
    assert (wd / "latest.pth").samefile(wd / "epoch_2.pth")
    best_epoch = load_checkpoint(wd / "best.pth")["meta"]["epoch"]
    assert (wd / "best.pth").samefile(wd / f"epoch_{best_epoch}.pth")
    assert not [p.name for p in wd.iterdir() if p.name.startswith(".")]  # no temporary file left
    assert 0 <= metrics["mAP"] <= 100 and "CF1" in metrics
    ckpt = load_checkpoint(wd / "latest.pth")  # weights_only=True inside
    assert ckpt["meta"]["epoch"] == 2 and ckpt["meta"]["classes"][0] == "circle"
    assert ckpt["meta"]["config"]["optimizer"]["type"] == "AdamW"  # the resolved config travels along
    records = [json.loads(line) for line in (wd / "scalars.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["mode"] == "val"] == [1, 2]
    assert all(r["loss"] > 0 for r in records if r["mode"] == "train")
    # TensorBoard events read back with TensorBoard's own reader
    acc = EventAccumulator(str(wd / "tb"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"train/loss", "train/lr", "train/grad_norm", "val/mAP", "val/CF1", "val/OF1"} <= set(tags)
    assert all(e.value > 0 for e in acc.Scalars("train/grad_norm"))
    assert [e.step for e in acc.Scalars("val/mAP")] == [1, 2]
    assert acc.Scalars("val/mAP")[-1].value == pytest.approx(metrics["mAP"], rel=1e-5)
    assert "val_AP/circle" in tags
    assert acc.Scalars("val_AP/circle")[-1].value == pytest.approx(metrics["AP"][0], rel=1e-5)
    pr = acc.Tensors("val_pr/circle")  # add_pr_curve's summaries, one per validation
    assert [e.step for e in pr] == [1, 2]
    grids = acc.Images("val/predictions")  # the labelled validation image grid
    assert [e.step for e in grids] == [1, 2] and grids[0].width > 400 and grids[0].height > 100


def test_loss_decreases_on_real_images(make_config, tmp_path):
    cfg = make_config(tmp_path / "run", max_epochs=4, val_interval=4)
    cfg["optimizer"]["lr"] = 3e-3
    train_model(cfg)
    losses = [json.loads(x)["loss"] for x in (tmp_path / "run/scalars.jsonl").read_text().splitlines() if '"train"' in x]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3


@HOOKS.register_module()
class CrashAfterEpoch(Hook):
    """Simulates a crash right after the checkpoint of epoch ``epoch`` was written."""

    priority = 90  # after CheckpointHook

    def __init__(self, epoch):
        self.epoch = epoch

    def after_epoch(self, trainer):
        if trainer.epoch == self.epoch:
            raise KeyboardInterrupt("simulated crash")


def test_resume_after_crash_equals_uninterrupted_run(make_config, tmp_path):
    m_full = train_model(make_config(tmp_path / "full", max_epochs=3))
    part = make_config(tmp_path / "part", max_epochs=3)
    with pytest.raises(KeyboardInterrupt):
        train_model({**part, "custom_hooks": [{"type": "CrashAfterEpoch", "epoch": 2}]})
    assert not (tmp_path / "part/epoch_3.pth").exists()
    m_res = train_model(part, resume="auto")
    a = load_checkpoint(tmp_path / "full/latest.pth")
    b = load_checkpoint(tmp_path / "part/latest.pth")
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], rtol=0, atol=0, msg=k)
    assert m_res["mAP"] == m_full["mAP"] and m_res["CF1"] == m_full["CF1"]
    assert a["hooks"]["CheckpointHook"] == b["hooks"]["CheckpointHook"]  # best-so-far carried over


def test_warmup_then_cosine_lr_per_iteration():
    model = torch.nn.Linear(2, 2)
    opt = build_optimizer({"type": "SGD", "lr": 1.0}, model)
    sched = build_scheduler(
        [{"type": "LinearLR", "start_factor": 0.25, "end": 1}, {"type": "CosineAnnealingLR", "eta_min": 0.0}],
        opt,
        iters_per_epoch=4,
        max_epochs=3,
    )
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:5] == pytest.approx([0.25, 0.4375, 0.625, 0.8125, 1.0])  # linear over 4 iterations
    assert lrs[5] == pytest.approx(0.5 * (1 + torch.cos(torch.tensor(torch.pi / 8)).item()))  # cosine over 8
    assert lrs[-1] < 0.05


def test_scheduler_phases_must_be_contiguous():
    opt = build_optimizer({"type": "SGD", "lr": 1.0}, torch.nn.Linear(2, 2))
    with pytest.raises(ConfigError, match="contiguous"):
        build_scheduler([{"type": "LinearLR", "end": 1}, {"type": "StepLR", "begin": 2, "step_size": 1}], opt, 4, 3)


def test_paramwise_no_decay_on_norm_and_bias_and_lr_mult(make_config):
    cfg = make_config()
    trainer = build_trainer(cfg)
    opt = build_optimizer(
        {
            "type": "SGD",
            "lr": 0.1,
            "weight_decay": 1e-4,
            "paramwise_cfg": {"norm_decay_mult": 0.0, "bias_decay_mult": 0.0, "custom_keys": {"head": {"lr_mult": 10}}},
        },
        trainer.model,
    )
    groups = {(g["lr"], g["weight_decay"]): len(g["params"]) for g in opt.param_groups}
    assert (1.0, 1e-4) in groups and (1.0, 0.0) in groups  # head weight and head bias at lr x10
    assert (0.1, 0.0) in groups and (0.1, 1e-4) in groups
    bn = trainer.model.backbone.stem[1].weight
    assert any(bn is p and g["weight_decay"] == 0 for g in opt.param_groups for p in g["params"])


class TinyModel(torch.nn.Module):
    """Linear multi-label model with the (images, targets, mode) interface; no BatchNorm."""

    def __init__(self, c=3):
        super().__init__()
        self.fc = torch.nn.Linear(4, c)

    def forward(self, x, targets=None, mode="tensor"):
        logits = self.fc(x)
        if mode == "loss":
            return {"loss": torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)}
        return torch.sigmoid(logits) if mode == "predict" else logits


def run_trainer(batch_size, accumulate, tmp_path):
    from torch.utils.data import DataLoader, TensorDataset

    from mlcls.engine import Trainer

    g = torch.Generator().manual_seed(0)
    ds = TensorDataset(torch.randn(16, 4, generator=g), (torch.rand(16, 3, generator=g) > 0.5).float())
    torch.manual_seed(0)
    model = TinyModel()
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False)
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.5), loader, max_epochs=2, accumulate=accumulate, work_dir=tmp_path)
    trainer.train()
    return model.fc.weight.detach().clone(), trainer


def test_trainer_gradient_accumulation_equals_large_batch(tmp_path):
    big, t1 = run_trainer(batch_size=8, accumulate=1, tmp_path=tmp_path)
    acc, t2 = run_trainer(batch_size=4, accumulate=2, tmp_path=tmp_path)
    torch.testing.assert_close(acc, big)
    assert t2.iter == 8 and t1.iter == 4
    plain, _ = run_trainer(batch_size=4, accumulate=1, tmp_path=tmp_path)
    assert not torch.allclose(plain, big)  # the comparison can tell the difference


def test_resume_with_longer_schedule_replays_the_new_schedule(make_config, tmp_path):
    """Raising max_epochs and resuming gives the lr the new schedule has at that point."""
    short = make_config(tmp_path / "run", max_epochs=1)
    train_model(short)
    longer = make_config(tmp_path / "run", max_epochs=3)
    trainer = build_trainer(longer)
    trainer.resume(tmp_path / "run/latest.pth")
    reference = build_trainer(make_config(tmp_path / "ref", max_epochs=3))
    for _ in range(trainer.epoch * trainer.iters_per_epoch):
        reference.optimizer.step()
        reference.scheduler.step()
    assert trainer.current_lr() == pytest.approx(reference.current_lr())
    assert trainer.epoch == 1


def test_threshold_tuning_hook_stores_thresholds_matching_each_checkpoint(make_config, tmp_path):
    from mlcls.apis.test import test_model
    from mlcls.evaluation import tune_thresholds

    cfg = make_config(tmp_path / "run", max_epochs=2)
    cfg["custom_hooks"] = [{"type": "ThresholdTuningHook", "objective": "f1", "min_pos": 1}]
    train_model(cfg)
    ckpt = load_checkpoint(tmp_path / "run/latest.pth")
    assert ckpt["thresholds"]["epoch"] == 2 and len(ckpt["thresholds"]["values"]) == 10
    assert json.loads((tmp_path / "run/thresholds.json").read_text())["values"] == ckpt["thresholds"]["values"]
    # they are the thresholds the final weights give on the validation split
    from mlcls.apis.test import build_from_checkpoint, predict_split

    model, _, cfg2 = build_from_checkpoint(tmp_path / "run/latest.pth")
    scores, targets, _ = predict_split(cfg2, model, "val")
    thr, _ = tune_thresholds(scores, targets, min_pos=1)
    assert thr.tolist() == pytest.approx(ckpt["thresholds"]["values"])
    m = test_model(None, str(tmp_path / "run/latest.pth"), work_dir=str(tmp_path / "t"))
    assert m["thresholds_source"].startswith("checkpoint") and m["thr"] == pytest.approx(thr.tolist())
