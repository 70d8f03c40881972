"""TimmBackbone over a few small timm models; CSRA and ML-Decoder heads against their definitions."""

from __future__ import annotations

import pytest
import timm
import torch

from mlcls.apis import build_trainer
from mlcls.errors import BuildError, CheckpointError
from mlcls.models import build_model
from mlcls.models.heads.csra import CSRAClsHead
from mlcls.models.heads.ml_decoder import MLDecoderHead
from tests.conftest import assert_metrics_match_sklearn

TIMM_MODELS = [
    ("resnet10t", {}),
    ("mobilenetv3_small_050", {}),
    ("vit_tiny_patch16_224", {"img_size": 32}),
]


@pytest.mark.parametrize("name, kwargs", TIMM_MODELS, ids=[m for m, _ in TIMM_MODELS])
@pytest.mark.parametrize("head", ["MultiLabelLinearClsHead", "CSRAClsHead", "MLDecoderHead"])
def test_timm_backbone_forward_backward_with_each_head(name, kwargs, head):
    head_cfg = {"type": head}
    if head == "MLDecoderHead":
        head_cfg.update(embed_dim=32, num_heads=4, dim_feedforward=64)
    model = build_model(
        {"type": "ImageClassifier", "backbone": {"type": "TimmBackbone", "model_name": name, **kwargs}, "head": head_cfg},
        num_classes=5,
    )
    reference = timm.create_model(name, num_classes=0, **kwargs)
    assert model.backbone.out_channels == reference.num_features
    x = torch.randn(2, 3, 32, 32)
    targets = torch.tensor([[1, 0, -1, 1, 0], [0, 0, 1, 0, 1]], dtype=torch.float32)
    loss = model(x, targets, mode="loss")["loss"]
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.backbone.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)  # gradients reach the backbone
    probs = model.eval()(x, mode="predict")
    assert probs.shape == (2, 5) and ((probs >= 0) & (probs <= 1)).all()


def test_timm_backbone_loads_local_pretrained_weights_and_rejects_bad_names(tmp_path):
    src = timm.create_model("resnet10t", num_classes=1000)
    path = tmp_path / "resnet10t.pth"
    torch.save(src.state_dict(), path)
    bb = build_model({"type": "TimmBackbone", "model_name": "resnet10t", "pretrained": str(path)})
    for k, v in bb.model.state_dict().items():
        torch.testing.assert_close(v, src.state_dict()[k])
    with pytest.raises(BuildError, match="did you mean"):
        build_model({"type": "TimmBackbone", "model_name": "resnet10x"})
    with pytest.raises(CheckpointError, match="not found"):
        build_model({"type": "TimmBackbone", "model_name": "resnet10t", "pretrained": str(tmp_path / "none.pth")})


def test_timm_features_only_returns_the_chosen_stage():
    bb = build_model({"type": "TimmBackbone", "model_name": "resnet10t", "features_only": True, "out_index": -2})
    out = bb(torch.randn(1, 3, 64, 64))
    assert out.shape[1] == bb.out_channels and out.shape[-1] == 4  # stride 16


def reference_csra(x, weight, temperature, lam):
    """The paper's formula written out per class: base (mean) + lam * attention-pooled score."""
    w = weight[:, :, 0, 0] / weight[:, :, 0, 0].norm(dim=1, keepdim=True)  # [C, D]
    score = torch.einsum("cd,bdn->bcn", w, x.flatten(2))  # [B, C, HW]
    base = score.mean(2)
    att = score.max(2).values if temperature == 99 else (torch.softmax(temperature * score, 2) * score).sum(2)
    return base + lam * att


@pytest.mark.parametrize("num_heads", [1, 2, 4])
def test_csra_matches_the_paper_formula(num_heads):
    torch.manual_seed(0)
    head = CSRAClsHead(num_classes=6, in_channels=16, num_heads=num_heads, lam=0.3)
    x = torch.randn(3, 16, 5, 7)
    expect = sum(reference_csra(x, h.head.weight, h.temperature, 0.3) for h in head.heads)
    torch.testing.assert_close(head(x), expect, atol=1e-5, rtol=1e-5)
    assert [h.temperature for h in head.heads] == {1: [1], 2: [1, 99], 4: [1, 2, 4, 99]}[num_heads]
    with pytest.raises(BuildError, match="num_heads"):
        CSRAClsHead(num_classes=6, in_channels=16, num_heads=3)


def test_ml_decoder_group_fc_fixed_queries_and_linear_cost():
    def head(c):
        return MLDecoderHead(num_classes=c, in_channels=8, embed_dim=32, num_heads=4, dim_feedforward=64)

    h = head(250)
    assert h.num_groups == 100 and h.group_weight.shape == (100, 32, 3)
    assert h(torch.randn(2, 8, 3, 3)).shape == (2, 250)
    assert "queries" not in dict(h.named_parameters()) and "queries" in h.state_dict()  # fixed, saved
    # the class-dependent part grows linearly: 800 classes cost 4x the group-FC of 200
    extra = {c: sum(p.numel() for n, p in head(c).named_parameters() if n.startswith("group_")) for c in (200, 800)}
    assert extra[800] / extra[200] == pytest.approx(4.0, rel=0.01)
    small = head(10)
    assert small.num_groups == 10 and small.group_size == 1


@pytest.mark.parametrize("head", [{"type": "CSRAClsHead", "num_heads": 2, "lam": 0.1},
                                  {"type": "MLDecoderHead", "embed_dim": 64, "num_heads": 4, "dim_feedforward": 128}],
                         ids=["csra", "ml_decoder"])  # fmt: skip
def test_short_training_run_with_attention_heads(make_config, head):
    cfg = make_config(max_epochs=1)
    cfg["model"]["head"] = {**head, "loss": {"type": "AsymmetricLoss"}}
    trainer = build_trainer(cfg)
    before = {k: v.clone() for k, v in trainer.model.head.state_dict().items()}
    metrics = trainer.train()
    assert_metrics_match_sklearn(metrics, *trainer.last_eval)
    after = trainer.model.head.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if k != "queries")
    if "queries" in before:
        assert torch.equal(before["queries"], after["queries"])
