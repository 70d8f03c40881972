"""Mixup / CutMix for multi-label targets: soft targets mixed like the images, unknown entries kept
unknown, every loss right on soft targets, draws reproducible from the iteration."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import sigmoid_focal_loss

from mlcls.datasets.batch_augments import BatchAugments, CutMix, Mixup, mix_targets
from mlcls.errors import ConfigError


def test_mixed_targets_keep_unknown_entries_unknown():
    t = torch.tensor([[1.0, 0.0, -1.0, 1.0], [0.0, 1.0, 1.0, -1.0]])
    got = mix_targets(t, t.flip(0), 0.7)
    torch.testing.assert_close(got, torch.tensor([[0.7, 0.3, -1.0, -1.0], [0.3, 0.7, -1.0, -1.0]]))


@pytest.mark.parametrize("augment", [Mixup(alpha=0.4), CutMix(alpha=1.0)], ids=["Mixup", "CutMix"])
def test_each_images_target_weights_are_its_sources_shares_of_the_pixels(augment):
    """Image i is all i and its target is one-hot on class i: after mixing, the target row of an image
    says which sources it holds and how much, so the mean pixel value must be sum_j weight_j * j, the
    weights must add up to 1, and only the image itself and its partner may appear."""
    import numpy as np

    images = torch.arange(1.0, 9.0).view(8, 1, 1, 1).expand(8, 3, 32, 32).contiguous()  # values 1..8
    targets = torch.eye(8)
    for seed in range(6):
        x, y, _ = augment(images, targets, np.random.default_rng(seed))
        for i in range(8):
            weights = y[i]
            assert float(weights.sum()) == pytest.approx(1.0)
            assert set(torch.nonzero(weights).flatten().tolist()) <= {i, 7 - i}  # itself and its partner only
            assert float(x[i].mean()) == pytest.approx(float((weights * torch.arange(1.0, 9.0)).sum()), rel=1e-5)


def test_cutmix_target_weights_are_the_pasted_areas_fraction():
    import numpy as np

    images = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 3, 32, 32).contiguous()  # image i is all i
    targets = torch.eye(4)
    for seed in range(5):
        x, y, lam = CutMix(alpha=1.0)(images, targets, np.random.default_rng(seed))
        own = (x[0] == 0).float().mean().item()  # pixels of image 0 still its own
        assert own == pytest.approx(lam) and y[0, 0].item() == pytest.approx(lam) and y[0, 3].item() == pytest.approx(1 - lam)


def test_draws_depend_only_on_seed_and_iteration():
    aug = BatchAugments([{"type": "Mixup", "alpha": 0.4, "prob": 0.5}, {"type": "CutMix", "alpha": 1.0, "prob": 0.5}], seed=7)
    images, targets = torch.rand(4, 3, 16, 16), (torch.rand(4, 5) > 0.5).float()
    a = aug(images, targets, 11)
    b = BatchAugments([{"type": "Mixup", "alpha": 0.4, "prob": 0.5}, {"type": "CutMix", "alpha": 1.0, "prob": 0.5}], seed=7)(
        images, targets, 11
    )
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(aug(images, targets, 12)[0], a[0])
    with pytest.raises(ConfigError, match="did you mean 'CutMix'"):
        BatchAugments([{"type": "Cutmix"}])
    with pytest.raises(ConfigError, match="add up to at most 1"):
        BatchAugments([{"type": "Mixup", "prob": 0.8}, {"type": "CutMix", "prob": 0.8}])


@pytest.fixture
def soft():
    torch.manual_seed(0)
    logits = torch.randn(6, 5)
    hard = (torch.rand(6, 5) > 0.6).float()
    targets = mix_targets(hard, hard.flip(0), 0.65)
    targets[0, 0] = -1.0
    return logits, targets, targets >= 0


def test_bce_on_soft_targets_matches_the_formula(soft):
    from mlcls.losses import BCEWithLogitsLoss

    x, t, valid = soft
    p = torch.sigmoid(x.double())
    ref = -(t * torch.log(p) + (1 - t) * torch.log(1 - p))[valid].mean()
    torch.testing.assert_close(BCEWithLogitsLoss()(x, t).double(), ref)
    pw = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0], dtype=torch.float64)
    ref = -(pw * t * torch.log(p) + (1 - t) * torch.log(1 - p))[valid].mean()
    torch.testing.assert_close(BCEWithLogitsLoss(pos_weight=pw.tolist())(x, t).double(), ref)


def test_balanced_bce_on_soft_targets_matches_the_formula(soft):
    from mlcls.losses import BalancedBCELoss

    x, t, valid = soft
    wp, wn = torch.rand(5, dtype=torch.float64) + 0.5, torch.rand(5, dtype=torch.float64) + 0.5
    p = torch.sigmoid(x.double())
    ref = -(wp * t * torch.log(p) + wn * (1 - t) * torch.log(1 - p))[valid].sum()
    torch.testing.assert_close(BalancedBCELoss(wp.tolist(), wn.tolist(), reduction="sum")(x, t).double(), ref, rtol=1e-5, atol=1e-5)


def test_focal_on_soft_targets_equals_torchvision(soft):
    from mlcls.losses import FocalLoss

    x, t, valid = soft
    ref = sigmoid_focal_loss(x, t.clamp(min=0), alpha=0.25, gamma=2.0, reduction="none")[valid].mean()
    torch.testing.assert_close(FocalLoss()(x, t), ref)


def test_asl_on_soft_targets_matches_the_published_formula(soft):
    from mlcls.losses import AsymmetricLoss

    x, t, valid = soft
    p = torch.sigmoid(x.double())
    pm = (p - 0.05).clamp(min=0)
    loss = -(t * torch.log(p) + (1 - t) * pm**4 * torch.log(1 - pm))
    torch.testing.assert_close(AsymmetricLoss()(x, t).double(), loss[valid].sum(), rtol=1e-5, atol=1e-6)


def test_trainer_uses_them_and_the_powerset_head_refuses(make_config):
    from mlcls.apis import build_trainer

    cfg = make_config(max_epochs=1)
    cfg["train_cfg"]["batch_augments"] = [{"type": "Mixup", "alpha": 0.4, "prob": 1.0}]
    trainer = build_trainer(cfg)
    assert isinstance(trainer.batch_augments, BatchAugments)
    trainer.train()
    cfg["model"]["head"] = {"type": "LabelPowersetHead"}
    with pytest.raises(ConfigError, match="LabelPowersetHead cannot use Mixup/CutMix"):
        build_trainer(cfg)
