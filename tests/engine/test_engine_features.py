"""AMP, EMA, channels_last, non-finite and collapse guards, early stopping, auto-scale-lr."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from mlcls.apis.model import build_from_checkpoint
from mlcls.apis.train import build_trainer, scale_lr
from mlcls.engine import CollapseGuardHook, EarlyStoppingHook, Hook, ModelEMA, Trainer
from mlcls.errors import ConfigError, TrainingError
from mlcls.evaluation import MultiLabelMetric
from tests.conftest import assert_metrics_match_sklearn
from tests.engine.test_trainer import TinyModel


def tensor_loader(n=32, c=3, batch_size=8, nan_at=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, :c] + 0.3 * torch.randn(n, c, generator=g) > 0).float()
    if nan_at is not None:
        x[nan_at] = float("nan")
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False)


def tiny_trainer(tmp_path, **kw) -> Trainer:
    torch.manual_seed(0)
    model = kw.pop("model", None) or TinyModel()
    opt = torch.optim.SGD(model.parameters(), lr=kw.pop("lr", 0.5))
    return Trainer(
        model, opt, kw.pop("loader", None) or tensor_loader(), kw.pop("max_epochs", 2),
        val_loader=kw.pop("val_loader", tensor_loader(seed=1)), work_dir=tmp_path, **kw,
    )  # fmt: skip


def test_amp_bf16_on_cpu_runs_in_bf16_and_stays_finite(make_config):
    cfg = make_config(max_epochs=1, amp=True)
    # CPUs without native bf16 emulate it: ResNet-18 under autocast takes ~10x its fp32 time on
    # the 2-core CI machine; timm's tiny test ResNet runs the same autocast path in seconds
    cfg["model"]["backbone"] = {"type": "TimmBackbone", "model_name": "test_resnet"}
    trainer = build_trainer(cfg)
    dtypes = set()
    trainer.model.backbone.register_forward_hook(lambda m, i, o: dtypes.add(o.dtype))
    losses = []

    class Record(Hook):
        def after_step(self, t, outputs):
            losses.append(float(outputs["loss"]))

    trainer.hooks.append(Record())
    metrics = trainer.train()
    assert torch.bfloat16 in dtypes  # the convolutions really ran under bf16 autocast
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    assert_metrics_match_sklearn(metrics, *trainer.last_eval)


def test_ema_update_formula_and_warmup():
    model = torch.nn.Linear(2, 1)
    ema = ModelEMA(model, decay=0.9)
    start = ema.module.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    torch.testing.assert_close(ema.module.weight, 0.9 * start + 0.1 * model.weight.detach())
    warm = ModelEMA(model, decay=0.9997, warmup=True)
    assert warm.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0)
    with pytest.raises(ValueError, match="decay"):
        ModelEMA(model, decay=1.0)


@pytest.mark.parametrize("val_weights", ["ema", "raw", "both"])
def test_validation_scores_the_weights_it_is_asked_to(tmp_path, val_weights):
    model = TinyModel()
    trainer = tiny_trainer(tmp_path, model=model, ema=ModelEMA(model, decay=0.9), val_weights=val_weights)
    metrics = trainer.train()
    assert not torch.allclose(trainer.ema.module.fc.weight, model.fc.weight)  # EMA lags the raw weights
    ref = MultiLabelMetric()
    use = model if val_weights == "raw" else trainer.ema.module
    with torch.no_grad():
        x, y = trainer.val_loader.dataset.tensors
        expected = ref.evaluate(torch.sigmoid(use(x)), y)
    assert metrics["mAP"] == pytest.approx(expected["mAP"])
    if val_weights == "both":
        with torch.no_grad():
            raw = ref.evaluate(torch.sigmoid(model(x)), y)
        assert metrics["raw_mAP"] == pytest.approx(raw["mAP"])
        assert metrics["raw_mAP"] != metrics["mAP"]


def test_ema_is_saved_resumed_and_used_by_test_tools(make_config, tmp_path):
    cfg = make_config(max_epochs=2)
    cfg["ema"] = {"decay": 0.5}
    trainer = build_trainer(cfg)
    trainer.train()
    ckpt = torch.load(tmp_path / "work" / "latest.pth", weights_only=True)
    assert ckpt["meta"]["eval_weights"] == "ema" and ckpt["ema"]["updates"] == trainer.iter
    model, _, _ = build_from_checkpoint(tmp_path / "work" / "latest.pth", device="cpu")
    ema_sd = trainer.ema.module.state_dict()
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, ema_sd[k])
    resumed = build_trainer(cfg)
    resumed.resume(tmp_path / "work" / "latest.pth")
    for k, v in resumed.ema.module.state_dict().items():
        torch.testing.assert_close(v, ema_sd[k])
    assert resumed.ema.updates == trainer.ema.updates


def test_channels_last_model_and_same_result(make_config, tmp_path):
    trainers = {}
    for cl in (False, True):
        trainers[cl] = build_trainer(make_config(tmp_path / f"cl{cl}", max_epochs=1, channels_last=cl))
        conv = trainers[cl].model.backbone.stem[0].weight
        assert conv.is_contiguous(memory_format=torch.channels_last) == cl
    loader = trainers[False].train_loader
    images, _ = next(iter(loader))
    images = loader.batch_transform(images)  # uint8 batches are normalised after the copy to the device
    with torch.no_grad():
        a = trainers[False].model.eval()(images)
        b = trainers[True].model.eval()(images.to(memory_format=torch.channels_last))
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)  # same maths, NHWC kernels
    metrics = trainers[True].train()
    assert_metrics_match_sklearn(metrics, *trainers[True].last_eval)


def test_nonfinite_loss_stops_with_location_and_keeps_checkpoint(tmp_path):
    trainer = tiny_trainer(tmp_path, loader=tensor_loader(nan_at=20), max_epochs=3)
    # epoch 1 has the NaN in its third batch: nothing was written yet
    with pytest.raises(TrainingError, match=r"loss is nan at epoch 1, iteration 3/4 .*no checkpoint was written yet.*lr"):
        trainer.train()
    assert torch.isfinite(trainer.model.fc.weight).all()  # the bad step did not touch the weights


def test_nonfinite_loss_after_a_checkpoint_names_it_intact(tmp_path):
    from mlcls.engine import CheckpointHook

    loader = tensor_loader()
    trainer = tiny_trainer(tmp_path, loader=loader, max_epochs=3, hooks=[CheckpointHook(save_best=None)])

    class Poison(Hook):
        def before_epoch(self, t):
            if t.epoch == 1:  # second epoch: corrupt an input
                loader.dataset.tensors[0][9] = float("inf")

    trainer.hooks.insert(0, Poison())
    with pytest.raises(TrainingError, match=r"epoch 2, iteration 2/4.*latest.pth is intact"):
        trainer.train()
    saved = torch.load(tmp_path / "latest.pth", weights_only=True)
    assert saved["meta"]["epoch"] == 1


def test_skip_nonfinite_skips_the_allowed_number_of_steps(tmp_path):
    trainer = tiny_trainer(tmp_path, loader=tensor_loader(nan_at=20), max_epochs=1, skip_nonfinite=1)
    trainer.train()
    assert trainer.nonfinite_steps == 1 and torch.isfinite(trainer.model.fc.weight).all()
    trainer2 = tiny_trainer(tmp_path, loader=tensor_loader(nan_at=20), max_epochs=2, skip_nonfinite=1)
    with pytest.raises(TrainingError, match="epoch 2"):  # the same bad batch comes back next epoch
        trainer2.train()


def test_a_fused_optimizer_skips_the_poisoned_step_inside_its_kernel(tmp_path):
    """The sync-free path: a fused AdamW gets the non-finite flag as a tensor and leaves weights and
    its own step count alone on the poisoned step; the result equals a run without that batch's update."""
    torch.manual_seed(0)
    model = TinyModel()
    opt = torch.optim.AdamW(model.parameters(), lr=0.01, fused=True)
    trainer = Trainer(model, opt, tensor_loader(nan_at=20), 1, work_dir=tmp_path, skip_nonfinite=1)
    assert trainer.scaler_free_skip
    trainer.train()
    assert trainer.nonfinite_steps == 1 and torch.isfinite(model.fc.weight).all()
    assert int(opt.state[model.fc.weight]["step"]) == 3  # 4 batches, the third skipped in the kernel


class FakeEvent:
    """A CUDA event the device reaches only at the second query (the copy of the count is still in flight)."""

    def __init__(self):
        self.queries = 0

    def record(self):
        pass

    def query(self):
        self.queries += 1
        return self.queries > 1

    def synchronize(self):
        pass


def test_counts_read_late_still_name_the_bad_step(tmp_path, monkeypatch):
    """The CUDA path reads the skipped-step count once the device has reached it, never waiting: the
    decision comes a step late but names the iteration of the bad loss, and the weights stay finite."""
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    trainer = tiny_trainer(tmp_path, loader=tensor_loader(nan_at=20), max_epochs=1)
    trainer._async_counts = True  # the branch a CUDA device takes
    seen_at = []

    class Record(Hook):
        def after_step(self, t, outputs):
            seen_at.append((t.iter, t.nonfinite_steps))

    trainer.hooks.append(Record())
    with pytest.raises(TrainingError, match=r"loss is nan at epoch 1, iteration 3/4"):
        trainer.train()
    assert seen_at == [(1, 0), (2, 0), (3, 0)]  # at the bad step itself the count was still in flight
    assert torch.isfinite(trainer.model.fc.weight).all()


class ConstantModel(TinyModel):
    def __init__(self, bias: float):
        super().__init__()
        self.bias = bias

    def forward(self, x, targets=None, mode="tensor"):
        logits = self.fc(x) * 0 + self.bias
        if mode == "loss":
            return {"loss": torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)}
        return torch.sigmoid(logits) if mode == "predict" else logits


@pytest.mark.parametrize("bias, problem", [(0.0, "nearly constant"), (-6.0, "no class is predicted")])
def test_collapse_guard_warns_on_constant_outputs(tmp_path, caplog, bias, problem):
    trainer = tiny_trainer(tmp_path, model=ConstantModel(bias), max_epochs=1, hooks=[CollapseGuardHook()])
    logging.getLogger("mlcls").propagate = True
    with caplog.at_level(logging.WARNING, logger="mlcls"):
        metrics = trainer.train()
    assert metrics["collapsed"] == 1
    assert problem in caplog.text and "Likely causes" in caplog.text and "mean" in caplog.text


def test_collapse_guard_is_quiet_on_a_healthy_model(tmp_path, caplog):
    trainer = tiny_trainer(tmp_path, max_epochs=2, hooks=[CollapseGuardHook()])
    logging.getLogger("mlcls").propagate = True
    with caplog.at_level(logging.WARNING, logger="mlcls"):
        metrics = trainer.train()
    assert metrics["collapsed"] == 0 and "collapsed" not in caplog.text


def test_early_stopping_stops_and_survives_resume(tmp_path):
    hook = EarlyStoppingHook(monitor="mAP", patience=2)
    trainer = tiny_trainer(tmp_path, lr=0.0, max_epochs=10, hooks=[hook])  # lr 0: mAP never improves
    trainer.train()
    assert trainer.epoch == 3 and hook.bad == 2  # best at 1, no gain at 2 and 3
    again = EarlyStoppingHook()
    again.load_state_dict(hook.state_dict())
    assert (again.best, again.bad) == (hook.best, hook.bad)


def test_auto_scale_lr_uses_total_batch(make_config):
    cfg = make_config()
    cfg["optimizer"]["lr"] = 0.1
    cfg["auto_scale_lr"] = {"enable": True, "base_batch_size": 64}
    cfg["train_cfg"]["accumulate"] = 2
    scale_lr(cfg, batch_size=16)  # 16 x 1 process x 2 accumulation = 32
    assert cfg["optimizer"]["lr"] == pytest.approx(0.05)
    cfg["auto_scale_lr"] = {"enable": True}
    with pytest.raises(ConfigError, match="base_batch_size"):
        scale_lr(cfg, batch_size=16)


def test_the_saved_config_is_the_one_that_ran(make_config):
    import yaml

    from mlcls.apis import train_model

    cfg = make_config(max_epochs=1)
    cfg["optimizer"]["lr"] = 0.1
    cfg["auto_scale_lr"] = {"enable": True, "base_batch_size": 64}  # 16 per batch: lr 0.025
    cfg["model"]["head"]["loss"]["pos_weight"] = "auto"
    train_model(cfg)
    saved = yaml.safe_load((Path(cfg["work_dir"]) / "config.yaml").read_text())
    assert saved["optimizer"]["lr"] == pytest.approx(0.025)
    stored = torch.load(Path(cfg["work_dir"]) / "latest.pth", weights_only=True)["meta"]["config"]
    assert saved["optimizer"] == stored["optimizer"] and saved["model"] == stored["model"]
    assert isinstance(saved["model"]["head"]["loss"]["pos_weight"], list)  # 'auto' written out as numbers


def test_a_null_default_hook_is_switched_off(make_config):
    from mlcls.engine import CheckpointHook, LoggerHook

    cfg = make_config(max_epochs=1)
    cfg["default_hooks"]["checkpoint"] = None
    cfg["default_hooks"]["collapse_guard"] = None
    trainer = build_trainer(cfg)
    kinds = {type(h) for h in trainer.hooks}
    assert LoggerHook in kinds and CheckpointHook not in kinds and CollapseGuardHook not in kinds
    trainer.train()
    assert not list(Path(cfg["work_dir"]).glob("*.pth"))  # no checkpoint hook, no checkpoint


def test_two_hooks_of_one_class_keep_their_own_state(make_config, tmp_path):
    cfg = make_config(max_epochs=2)
    cfg["custom_hooks"] = [
        {"type": "EarlyStoppingHook", "monitor": "mAP", "patience": 50},
        {"type": "EarlyStoppingHook", "monitor": "CF1", "patience": 50},
    ]
    trainer = build_trainer(cfg)
    trainer.train()
    state = trainer.state_dict()["hooks"]
    first, second = state["EarlyStoppingHook"], state["EarlyStoppingHook#2"]
    assert first["best"] == pytest.approx(max(trainer.val_metrics["mAP"], first["best"]))
    assert first != second  # mAP and CF1 bests differ
    resumed = build_trainer(dict(cfg, work_dir=str(tmp_path / "again")))
    resumed.resume(Path(cfg["work_dir"]) / "latest.pth")
    stops = [h for h in resumed.hooks if isinstance(h, EarlyStoppingHook)]
    assert [h.state_dict() for h in stops] == [first, second]
