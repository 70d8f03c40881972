import pytest
import torch
import torch.nn.functional as F

from mlcls.losses import BCEWithLogitsLoss


def data(b=6, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, c, generator=g) * 3
    targets = (torch.rand(b, c, generator=g) < 0.3).float()
    return logits, targets


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_matches_torch_with_per_class_pos_weight(reduction):
    logits, targets = data()
    pw = [1.0, 2.0, 5.0, 0.5]
    ref = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=torch.tensor(pw), reduction=reduction)
    out = BCEWithLogitsLoss(pos_weight=pw, reduction=reduction)(logits, targets)
    torch.testing.assert_close(out, ref)


def test_ignored_entries_leave_loss_and_normaliser():
    logits, targets = data()
    t = targets.clone()
    t[0, :2] = -1
    t[3, 3] = -1
    valid = t >= 0
    ref = F.binary_cross_entropy_with_logits(logits[valid], targets[valid], reduction="mean")
    loss_fn = BCEWithLogitsLoss(pos_weight=3.0)
    torch.testing.assert_close(BCEWithLogitsLoss()(logits, t), ref)
    none = BCEWithLogitsLoss(reduction="none")(logits, t)
    assert (none[~valid] == 0).all()
    # gradients do not reach ignored logits
    lg = logits.clone().requires_grad_(True)
    loss_fn(lg, t).backward()
    assert (lg.grad[~valid] == 0).all() and (lg.grad[valid] != 0).any()


def test_class_weight_and_loss_weight_and_extreme_logits():
    logits, targets = data()
    cw = torch.tensor([1.0, 0.0, 2.0, 1.0])
    ref = (F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * cw).mean() * 0.5
    torch.testing.assert_close(BCEWithLogitsLoss(class_weight=cw.tolist(), loss_weight=0.5)(logits, targets), ref)
    big = torch.tensor([[1e4, -1e4, 80.0, -80.0]], requires_grad=True)
    loss = BCEWithLogitsLoss(pos_weight=10.0)(big, torch.tensor([[0.0, 1.0, 1.0, 0.0]]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(big.grad).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="reduction"):
        BCEWithLogitsLoss(reduction="avg")
    with pytest.raises(ValueError, match="shape"):
        BCEWithLogitsLoss()(torch.zeros(2, 3), torch.zeros(2, 4))
