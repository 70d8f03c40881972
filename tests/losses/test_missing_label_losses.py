"""The missing-label losses against their papers' equations, computed here independently (numpy,
one entry at a time), and in training: built from the config, told the epoch by the trainer,
their state saved and resumed exactly, the same on two real DDP processes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mlcls.registry import LOSSES
from tests.conftest import tiny_config
from tests.ddp import spawn


def _sig(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def _data(seed=0, b=6, c=5):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, generator=g) * 2
    t = (torch.rand(b, c, generator=g) < 0.4).float()
    t[0, 1] = t[3, 4] = -1  # unknown entries
    return x, t


def _mean_known(per_entry, t) -> float:
    vals = [per_entry(i, j) for i in range(t.shape[0]) for j in range(t.shape[1]) if t[i, j] >= 0]
    return sum(vals) / len(vals)


def test_hill_loss_is_the_papers_equation():
    """Hill (Zhang et al. 2021): L+ = -(1 - p_m)^gamma log p_m, L- = (lambda - p) p^2."""
    x, t = _data()
    lamb, m, gamma = 1.5, 1.0, 2.0

    def entry(i, j):
        v, y = float(x[i, j]), float(t[i, j])
        p, pm = _sig(v), _sig(v - m)
        return -((1 - pm) ** gamma) * math.log(pm) if y == 1 else (lamb - p) * p**2

    got = LOSSES.build({"type": "HillLoss"})(x, t)
    assert float(got) == pytest.approx(_mean_known(entry, t), rel=1e-5)
    # the hill is the gradient's: a negative scored high (likely a missing positive) pulls less
    # than a doubtful one, where BCE pulls ever harder
    h = LOSSES.build({"type": "HillLoss", "reduction": "sum"})
    x = torch.tensor([[-2.0, 0.0, 4.0]], requires_grad=True)
    h(x, torch.zeros(1, 3)).backward()
    g = x.grad[0]
    assert g[1] > g[2] > 0 and g[1] > g[0] > 0


def test_splc_corrects_confident_negatives_after_the_warmup():
    """SPLC: focal margin loss; from epoch ``warmup`` on, a labelled 0 with sigmoid(x) > tau is a 1."""
    x, t = _data(1)
    x[2, 0], t[2, 0] = 3.0, 0.0  # a confident "negative": a missing label
    tau, m, gamma = 0.6, 1.0, 2.0

    def entry(i, j, corrected):
        v, y = float(x[i, j]), float(t[i, j])
        if y == 1:
            v -= m
        elif corrected and _sig(v) > tau:
            y = 1.0
        p = _sig(v)
        pt = (1 - p) if y == 1 else p
        return -(math.log(p) if y == 1 else math.log(1 - p)) * pt**gamma

    loss = LOSSES.build({"type": "SPLCLoss", "tau": tau, "warmup": 1})
    loss.set_epoch(0)
    assert float(loss(x, t)) == pytest.approx(_mean_known(lambda i, j: entry(i, j, False), t), rel=1e-5)
    loss.set_epoch(1)
    after = float(loss(x, t))
    assert after == pytest.approx(_mean_known(lambda i, j: entry(i, j, True), t), rel=1e-5)
    assert after != pytest.approx(_mean_known(lambda i, j: entry(i, j, False), t), rel=1e-3)


def _bce(v: float, y: float) -> float:
    return -(y * math.log(_sig(v)) + (1 - y) * math.log(1 - _sig(v)))


@pytest.mark.parametrize("mode", ["reject", "correct"])
def test_large_loss_rejects_or_corrects_the_largest_losses_of_the_labelled_zeros(mode):
    """LL-R / LL-Ct (Kim et al. 2022): epoch 0 is plain BCE; at epoch e the labelled 0s with the
    largest losses, ceil(B x C x delta_rel x e) of them, are rejected (0) or trained as positives."""
    x, t = _data(2, b=8, c=5)
    loss = LOSSES.build({"type": "LargeLoss", "mode": mode, "delta_rel": 0.05})
    loss.set_epoch(0)
    assert float(loss(x, t)) == pytest.approx(_mean_known(lambda i, j: _bce(float(x[i, j]), float(t[i, j])), t), rel=1e-5)
    loss.set_epoch(2)
    k = math.ceil(8 * 5 * 0.05 * 2)  # 4
    zeros = sorted(((_bce(float(x[i, j]), 0.0), (i, j)) for i in range(8) for j in range(5) if t[i, j] == 0), reverse=True)
    chosen = {ij for _, ij in zeros[:k]}

    def entry(i, j):
        v, y = float(x[i, j]), float(t[i, j])
        if (i, j) in chosen:
            return 0.0 if mode == "reject" else _bce(v, 1.0)
        return _bce(v, y)

    assert float(loss(x, t)) == pytest.approx(_mean_known(entry, t), rel=1e-5)
    # a rate beyond the batch's labelled 0s never touches a positive or an unknown entry
    loss.set_epoch(1000)
    per = LOSSES.build({"type": "LargeLoss", "mode": mode, "delta_rel": 0.05, "reduction": "none"})
    per.set_epoch(1000)
    out = per(x, t)
    pos = t == 1
    torch.testing.assert_close(out[pos], torch.nn.functional.binary_cross_entropy_with_logits(x[pos], t[pos], reduction="none"))
    assert (out[t < 0] == 0).all()


def test_large_loss_permanent_correction_keeps_the_labels_it_corrected():
    """LL-Cp: the chosen 0s become 1s for good, per sample; the state round-trips through a checkpoint."""
    x, t = _data(3, b=4, c=5)
    stats = {"num_samples": 10, "pos": [1] * 5, "neg": [9] * 5}
    loss = LOSSES.build({"type": "LargeLoss", "mode": "correct_permanent", "delta_rel": 0.1}, label_stats=stats)
    index = torch.tensor([7, 2, 5, 0])
    loss.set_sample_index(index)
    loss.set_epoch(0)
    loss(x, t)
    assert not loss.corrected.any()  # epoch 0 modifies nothing
    loss.set_epoch(1)
    loss(x, t)
    k = math.ceil(4 * 5 * 0.1)
    zeros = sorted(((_bce(float(x[i, j]), 0.0), (i, j)) for i in range(4) for j in range(5) if t[i, j] == 0), reverse=True)
    expected = {(int(index[i]), j) for _, (i, j) in zeros[:k]}
    assert {tuple(p) for p in loss.corrected.nonzero().tolist()} == expected
    # the next time those samples come, their corrected entries are positives from the start
    per = LOSSES.build({"type": "LargeLoss", "mode": "correct_permanent", "delta_rel": 0.0, "reduction": "none"}, label_stats=stats)
    per.load_training_state(loss.training_state())
    per.set_sample_index(index)
    per.set_epoch(1)
    out = per(x, t)
    for s, j in expected:
        i = index.tolist().index(s)
        assert float(out[i, j]) == pytest.approx(_bce(float(x[i, j]), 1.0), rel=1e-5)
    with pytest.raises(ValueError, match="sample indices were not given"):
        per.set_sample_index(None)
        per(x, t)


def test_selective_loss_ignores_or_negates_unannotated_entries_by_class_prior():
    """Ben-Baruch et al. 2022: unannotated entries of classes whose prior exceeds the threshold are
    ignored, the others are negatives except the top likelihood_topk x B scored; asymmetric focusing."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(6, 3, generator=g) * 2
    t = torch.full((6, 3), -1.0)
    t[0, 0], t[1, 1], t[2, 2], t[3, 0] = 1, 0, 1, 0
    priors = [0.3, 0.01, 0.02]  # class 0 frequent: its unannotated entries are ignored
    topk = 0.5  # 3 of the batch's unannotated entries, the highest scored, are ignored too
    loss = LOSSES.build({"type": "SelectiveLoss", "priors": priors, "likelihood_topk": topk})
    unann = [(i, j) for i in range(6) for j in range(3) if t[i, j] < 0]
    top = {ij for _, ij in sorted(((float(x[i, j]), (i, j)) for i, j in unann), reverse=True)[: int(topk * 6)]}

    def entry(i, j):
        p, y = _sig(float(x[i, j])), float(t[i, j])
        if y == 1:
            return -math.log(p) * (1 - p) ** 0.0
        if y == 0:
            return -math.log(1 - p) * p**1.0
        return -math.log(1 - p) * p**4.0

    kept = [(i, j) for i in range(6) for j in range(3) if t[i, j] >= 0 or (priors[j] <= 0.05 and (i, j) not in top)]
    expected = sum(entry(i, j) for i, j in kept) / len(kept)
    assert float(loss(x, t)) == pytest.approx(expected, rel=1e-5)


def test_selective_priors_are_estimated_from_the_previous_epochs_scores():
    stats = {"num_samples": 4, "pos": [2, 0], "neg": [2, 4]}
    loss = LOSSES.build({"type": "SelectiveLoss"}, label_stats=stats)
    torch.testing.assert_close(loss.prior, torch.tensor([0.5, 0.0]))  # the first epoch: the annotated labels
    loss.train()
    x = torch.tensor([[0.0, -2.0], [2.0, -4.0]])
    loss.set_epoch(0)
    loss(x, torch.full((2, 2), -1.0))
    state = loss.training_state()
    loss.set_epoch(0)  # the same epoch again (a mid-epoch resume): nothing changes
    assert loss.seen == 2
    loss.set_epoch(1)
    torch.testing.assert_close(loss.prior, torch.sigmoid(x).mean(0))
    again = LOSSES.build({"type": "SelectiveLoss"}, label_stats=stats)
    again.load_training_state(state)
    again.set_epoch(1)
    torch.testing.assert_close(again.prior, loss.prior)


def _missing_label_config(root, work_dir, loss: dict, **train_cfg) -> dict:
    cfg = tiny_config(root, work_dir, **train_cfg)
    cfg["model"]["backbone"] = {"type": "TimmBackbone", "model_name": "test_resnet"}
    cfg["model"]["head"]["loss"] = loss
    cfg["default_hooks"]["checkpoint"]["interval"] = 1
    return cfg


LL_CP = {"type": "LargeLoss", "mode": "correct_permanent", "delta_rel": 0.05}


def test_the_trainer_tells_the_epoch_and_a_resumed_run_keeps_the_corrected_labels(shapes_root, tmp_path):
    """Built from the config, LL-Cp trains, its corrected labels are stored in every checkpoint, and a
    run resumed after a crash ends with the same weights and the same corrected labels."""
    from mlcls.apis import train_model
    from mlcls.utils.checkpoint import load_checkpoint
    from tests.engine.test_trainer import CrashAfterEpoch  # noqa: F401  (registers the hook)

    full = _missing_label_config(shapes_root, tmp_path / "full", LL_CP, max_epochs=3)
    train_model(full)
    a = load_checkpoint(tmp_path / "full" / "latest.pth")
    state = a["loss_state"]["head.loss_module"]
    assert state["shape"] == [96, 10] and len(state["corrected"]) > 0
    first = load_checkpoint(tmp_path / "full" / "epoch_1.pth")["loss_state"]["head.loss_module"]
    assert len(first["corrected"]) == 0  # epoch 0 corrected nothing
    part = _missing_label_config(shapes_root, tmp_path / "part", LL_CP, max_epochs=3)
    with pytest.raises(KeyboardInterrupt):
        train_model({**part, "custom_hooks": [{"type": "CrashAfterEpoch", "epoch": 2}]})
    train_model(part, resume="auto")
    b = load_checkpoint(tmp_path / "part" / "latest.pth")
    torch.testing.assert_close(b["loss_state"]["head.loss_module"]["corrected"], state["corrected"], rtol=0, atol=0)
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], rtol=0, atol=0, msg=k)
    # evaluation and inference build the model without a training set: the loss's state is not needed
    from mlcls.apis import inference_model, init_model, test_model

    assert np.isfinite(test_model(None, str(tmp_path / "part" / "latest.pth"), work_dir=str(tmp_path / "t"))["mAP"])
    first_image = next(p for p in (shapes_root / "images" / "test").iterdir())
    assert set(inference_model(init_model(None, tmp_path / "part" / "latest.pth"), str(first_image))["scores"]) == set(a["meta"]["classes"])


@pytest.mark.parametrize("loss", [{"type": "HillLoss"}, {"type": "SPLCLoss", "warmup": 1}, {"type": "SelectiveLoss"},
                                  {"type": "LargeLoss", "mode": "reject", "loss": {"type": "BCEWithLogitsLoss", "pos_weight": "auto"}}],
                         ids=["hill", "splc", "selective", "ll-r-auto"])  # fmt: skip
def test_each_loss_builds_from_the_config_and_trains(loss, shapes_root, tmp_path):
    from mlcls.apis import train_model
    from mlcls.utils.checkpoint import load_checkpoint

    metrics = train_model(_missing_label_config(shapes_root, tmp_path / "run", loss, max_epochs=2))
    assert np.isfinite(metrics["mAP"])
    stored = load_checkpoint(tmp_path / "run" / "latest.pth")["meta"]["config"]["model"]["head"]["loss"]
    if loss["type"] == "LargeLoss":  # the inner loss's 'auto' weights are written out as numbers
        assert isinstance(stored["loss"]["pos_weight"], list) and len(stored["loss"]["pos_weight"]) == 10


def _ddp_llcp_worker(rank: int, world: int, root: str, work_dir: str) -> None:
    """Each rank trains on its own share of the samples; the labels corrected on any rank must be
    held by every rank (the live state, before anything is saved)."""
    from pathlib import Path

    import torch.distributed as dist

    from mlcls.apis.train import build_trainer

    cfg = _missing_label_config(Path(root), Path(work_dir), LL_CP, max_epochs=2)
    cfg["val_dataloader"] = None
    cfg["default_hooks"]["checkpoint"]["save_best"] = None
    trainer = build_trainer(cfg)
    trainer.train()
    corrected = trainer.loss_states["head.loss_module"].corrected.long()
    gathered = [torch.zeros_like(corrected) for _ in range(world)]
    dist.all_gather(gathered, corrected)
    assert gathered[0].any() and all(torch.equal(gathered[0], g) for g in gathered)


def test_two_real_ddp_processes_hold_the_same_corrected_labels(shapes_root, tmp_path):
    spawn(_ddp_llcp_worker, 2, (str(shapes_root), str(tmp_path / "ddp")))
