"""Focal and asymmetric losses against independent references (torchvision, the ASL formula, timm)."""

import pytest
import torch
from timm.loss import AsymmetricLossMultiLabel
from torchvision.ops import sigmoid_focal_loss

from mlcls.losses import AsymmetricLoss, FocalLoss


def data(b=8, c=5, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, generator=g) * scale, (torch.rand(b, c, generator=g) < 0.3).float()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("gamma,alpha", [(2.0, 0.25), (0.0, 0.5), (1.5, -1.0)])
def test_focal_equals_torchvision(reduction, gamma, alpha):
    x, y = data()
    ref = sigmoid_focal_loss(x, y, alpha=alpha, gamma=gamma, reduction=reduction)
    torch.testing.assert_close(FocalLoss(gamma=gamma, alpha=alpha, reduction=reduction)(x, y), ref)


def test_focal_ignores_minus_one_in_loss_and_normaliser():
    x, y = data()
    t = y.clone()
    t[1, :] = -1
    t[4, 2] = -1
    keep = t >= 0
    ref = sigmoid_focal_loss(x[keep], y[keep], reduction="mean")
    torch.testing.assert_close(FocalLoss()(x, t), ref)


def asl_formula(x, y, gp, gn, clip):
    """The paper's per-element formula, written directly from the definitions (float64)."""
    x, y = x.double(), y.double()
    p = torch.sigmoid(x)
    pm = (p - clip).clamp(min=0)
    return -(y * (1 - p) ** gp * torch.log(p) + (1 - y) * pm**gn * torch.log(1 - pm))


@pytest.mark.parametrize("gp,gn,clip", [(0.0, 4.0, 0.05), (1.0, 2.0, 0.0), (0.0, 0.0, 0.0)])
def test_asl_equals_paper_formula_and_timm(gp, gn, clip):
    x, y = data(scale=2.0)
    ours = AsymmetricLoss(gamma_pos=gp, gamma_neg=gn, clip=clip, reduction="none")(x, y)
    torch.testing.assert_close(ours.double(), asl_formula(x, y, gp, gn, clip), rtol=1e-5, atol=1e-6)
    timm_ref = AsymmetricLossMultiLabel(gamma_pos=gp, gamma_neg=gn, clip=clip, reduction="sum")(x, y)
    torch.testing.assert_close(AsymmetricLoss(gamma_pos=gp, gamma_neg=gn, clip=clip, reduction="sum")(x, y), timm_ref, rtol=1e-5, atol=1e-5)
    mean = AsymmetricLoss(gamma_pos=gp, gamma_neg=gn, clip=clip, reduction="mean")(x, y)
    torch.testing.assert_close(mean, timm_ref / y.numel(), rtol=1e-5, atol=1e-6)


def test_asl_with_focal_gamma_zero_and_no_clip_is_bce():
    x, y = data()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(x, y, reduction="sum")
    torch.testing.assert_close(AsymmetricLoss(gamma_pos=0, gamma_neg=0, clip=0)(x, y), bce)


def test_asl_detach_focal_changes_gradient_not_value_and_keeps_grad_mode():
    x, y = data()
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    la = AsymmetricLoss(detach_focal=False)(xa, y)
    lb = AsymmetricLoss(detach_focal=True)(xb, y)
    torch.testing.assert_close(la, lb)
    la.backward()
    lb.backward()
    assert not torch.allclose(xa.grad, xb.grad)
    assert torch.is_grad_enabled()


@pytest.mark.parametrize("loss", [FocalLoss(), AsymmetricLoss(), AsymmetricLoss(clip=0.0)])
def test_finite_gradients_at_extreme_logits_and_ignore(loss):
    x = torch.tensor([[1e4, -1e4, 100.0, -100.0, 0.0]], requires_grad=True)
    y = torch.tensor([[0.0, 1.0, 1.0, 0.0, -1.0]])
    out = loss(x, y)
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(x.grad).all()
    assert x.grad[0, 4] == 0  # ignored entry gets no gradient


def test_losses_compute_in_fp32_under_autocast():
    x, y = data()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        xb = x.to(torch.bfloat16) * 1.0
        for loss in (FocalLoss(), AsymmetricLoss()):
            out = loss(xb, y)
            assert out.dtype == torch.float32
