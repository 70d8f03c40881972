"""InstancePooling against a hand-written per-bag loop, and the packed bag batch against single bags."""

from __future__ import annotations

import math

import pytest
import torch

from mlcls.models.necks import InstancePooling


@torch.no_grad()
def reference(pool: InstancePooling, bag: torch.Tensor) -> torch.Tensor:
    """One bag [S, D] -> [D], written out from the formulas (Ilse et al., 2018 for attention)."""
    if pool.mode == "max":
        return torch.tensor([max(bag[:, j].tolist()) for j in range(bag.shape[1])], dtype=torch.float64)
    if pool.mode == "mean":
        return bag.sum(0) / bag.shape[0]
    if pool.mode == "lse":
        cols = [bag[:, j].tolist() for j in range(bag.shape[1])]
        return torch.tensor([math.log(sum(math.exp(pool.r * x) for x in col) / len(col)) / pool.r for col in cols], dtype=torch.float64)
    scores = []
    for h in bag:
        z = torch.tanh(pool.attn_v.weight @ h + pool.attn_v.bias)
        if pool.mode == "gated_attention":
            z = z * torch.sigmoid(pool.attn_u.weight @ h + pool.attn_u.bias)
        scores.append(float(pool.attn_w.weight[0] @ z + pool.attn_w.bias[0]))
    e = [math.exp(s - max(scores)) for s in scores]
    a = torch.tensor([x / sum(e) for x in e], dtype=torch.float64)
    return (a[:, None] * bag).sum(0)


@pytest.mark.parametrize("mode", InstancePooling.MODES)
def test_each_mode_equals_the_per_bag_formula(mode):
    torch.manual_seed(0)
    pool = InstancePooling(mode, in_channels=6, hidden=5, r=3.0).double()
    sizes = torch.tensor([3, 1, 5, 2])
    x = torch.randn(int(sizes.sum()), 6, dtype=torch.float64)
    out = pool(x, sizes)
    bags = x.split(sizes.tolist())
    expected = torch.stack([reference(pool, b) for b in bags])
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9)
    for b, row in zip(bags, out):  # the export form: one bag without padding
        torch.testing.assert_close(pool.pool_one(b)[0], row, rtol=1e-9, atol=1e-9)
    if mode.endswith("attention"):
        assert [w.numel() for w in pool.last_weights] == [3, 1, 5, 2]
        assert all(abs(float(w.sum()) - 1) < 1e-9 for w in pool.last_weights)
    # gradients reach every instance of every bag (max: the argmax ones)
    x.requires_grad_(True)
    pool(x, sizes).sum().backward()
    assert all(bool((g.abs().sum(1) > 0).any()) for g in x.grad.split(sizes.tolist()))


def test_an_unknown_mode_is_one_line():
    with pytest.raises(ValueError, match="expected one of max, mean, lse, attention, gated_attention"):
        InstancePooling("median")


@pytest.mark.parametrize("views, separate", [(None, False), (["a", "b"], False), (["a", "b"], True)])
def test_a_packed_batch_equals_a_loop_over_single_bags(views, separate):
    from mlcls.datasets.bags import pack
    from mlcls.models import build_model

    torch.manual_seed(0)
    cfg = {
        "type": "ImageClassifier", "backbone": {"type": "ResNet", "depth": 18}, "views": views, "separate_backbones": separate,
        "neck": {"type": "InstancePooling", "mode": "gated_attention"}, "head": {"type": "MultiLabelLinearClsHead", "loss": {"type": "BCEWithLogitsLoss"}},
    }  # fmt: skip
    model = build_model(cfg, num_classes=3).eval()
    names = views or [""]
    samples = [{v: torch.randn(n + i, 3, 32, 32) for i, v in enumerate(names)} for n in (2, 5, 1)]
    samples = samples if views else [s[""] for s in samples]
    with torch.no_grad():
        packed = model(pack(samples), mode="predict")
        alone = torch.cat([model(pack([s]), mode="predict") for s in samples])
        one = torch.cat([model.predict_one_bag(*(s[v] for v in names)) if views else model.predict_one_bag(s) for s in samples])
    torch.testing.assert_close(packed, alone, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(packed, one, rtol=1e-5, atol=1e-5)
    if separate:
        assert model.backbones["a"] is not model.backbones["b"]


def test_instance_chunks_and_checkpointing_give_the_same_numbers():
    from mlcls.datasets.bags import pack
    from mlcls.models import build_model

    torch.manual_seed(0)
    cfg = {"type": "ImageClassifier", "backbone": {"type": "ResNet", "depth": 18}, "neck": {"type": "InstancePooling", "mode": "max"},
           "head": {"type": "MultiLabelLinearClsHead", "loss": {"type": "BCEWithLogitsLoss"}}}  # fmt: skip
    whole = build_model(cfg, num_classes=3)
    chunked = build_model({**cfg, "instance_chunk": 3, "checkpoint_instances": True}, num_classes=3)
    chunked.load_state_dict(whole.state_dict())
    batch = pack([torch.randn(7, 3, 32, 32), torch.randn(4, 3, 32, 32)])
    targets = torch.tensor([[1.0, 0, 1], [0, 1, 0]])
    whole.eval(), chunked.eval()  # BN in eval: batch statistics would differ per chunk
    with torch.no_grad():
        torch.testing.assert_close(whole(batch, mode="predict"), chunked(batch, mode="predict"))
    chunked.train()
    for m in (whole, chunked):
        m.train()
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.eval()
        m.zero_grad()
        m(batch, targets, mode="loss")["loss"].backward()
    for (n, a), (_, b) in zip(whole.named_parameters(), chunked.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=n)
