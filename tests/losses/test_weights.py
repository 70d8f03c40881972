"""``auto`` class weights on a known label matrix, and their trip through the checkpoint."""

import pytest
import torch
import torch.nn.functional as F

from mlcls.losses import BalancedBCELoss, BCEWithLogitsLoss
from mlcls.losses.weights import auto_pos_weight, balanced_weights, effective_number_weights

# 10 images, 3 classes: class 0 in 8 images, class 1 in 2, class 2 in 5 with 1 ignored entry
STATS = {"num_samples": 10, "pos": [8, 2, 5], "neg": [2, 8, 4]}


def test_auto_pos_weight_is_neg_over_pos_capped():
    torch.testing.assert_close(auto_pos_weight(STATS), torch.tensor([0.25, 4.0, 0.8]))
    torch.testing.assert_close(auto_pos_weight(STATS, max_pos_weight=2.0), torch.tensor([0.25, 2.0, 0.8]))
    assert auto_pos_weight({"num_samples": 4, "pos": [0], "neg": [4]}, 50.0).item() == 50.0


def test_balanced_weights_seed_002_example():
    # a medical set: 1130 images, class 0 present in 913 -> w_pos = 1130/913 ~ 1.24, w_neg = 1130/217 ~ 5.21
    w_pos, w_neg = balanced_weights({"num_samples": 1130, "pos": [913], "neg": [217]}, normalize=False)
    assert w_pos.item() == pytest.approx(1130 / 913, rel=1e-6) and w_neg.item() == pytest.approx(1130 / 217, rel=1e-6)
    w_pos, w_neg = balanced_weights(STATS, normalize=True)
    pos, neg = torch.tensor(STATS["pos"]).float(), torch.tensor(STATS["neg"]).float()
    torch.testing.assert_close((pos * w_pos + neg * w_neg) / 10, torch.ones(3))  # each class keeps total weight N


def test_effective_number_weights_favour_rare_classes():
    w = effective_number_weights(STATS, beta=0.9)
    assert w[1] > w[2] > w[0]
    assert w.mean().item() == pytest.approx(1.0)


def test_bce_auto_uses_stats_and_rebuilds_from_its_resolved_config():
    x = torch.randn(4, 3)
    y = torch.tensor([[1.0, 0, 1], [0, 1, 0], [1, 0, -1], [1, 1, 0]])
    loss = BCEWithLogitsLoss(pos_weight="auto", label_stats=STATS)
    valid = y >= 0
    ref = F.binary_cross_entropy_with_logits(x, y.clamp(min=0), pos_weight=torch.tensor([0.25, 4.0, 0.8]), reduction="none")[valid].mean()
    torch.testing.assert_close(loss(x, y), ref)
    # the values go into the config stored with the checkpoint, not into the state dict
    resolved = loss.resolved_config({"type": "BCEWithLogitsLoss", "pos_weight": "auto"})
    assert resolved["pos_weight"] == pytest.approx([0.25, 4.0, 0.8]) and loss.state_dict() == {}
    rebuilt = BCEWithLogitsLoss(**{k: v for k, v in resolved.items() if k != "type"})  # no label counts needed
    torch.testing.assert_close(rebuilt(x, y), ref)
    # built without counts and without values, the weights are unknown: said, not guessed
    with pytest.raises(ValueError, match="pos_weight: auto was built without the training label counts"):
        BCEWithLogitsLoss(pos_weight="auto")(x, y)
    # checkpoints from before the weights left the state dict still load
    BCEWithLogitsLoss(pos_weight="auto").load_state_dict({"pos_weight": torch.ones(3)})


def test_balanced_bce_matches_formula():
    x = torch.randn(5, 3)
    y = (torch.rand(5, 3) > 0.5).float()
    loss = BalancedBCELoss(label_stats=STATS, reduction="sum")
    w_pos, w_neg = balanced_weights(STATS)
    p = torch.sigmoid(x.double())
    ref = -(w_pos * y * torch.log(p) + w_neg * (1 - y) * torch.log(1 - p)).sum()
    torch.testing.assert_close(loss(x, y).double(), ref, rtol=1e-5, atol=1e-5)
    explicit = BalancedBCELoss(pos_weights=w_pos.tolist(), neg_weights=w_neg.tolist(), reduction="sum")
    torch.testing.assert_close(explicit(x, y), loss(x, y))
    with pytest.raises(ValueError, match="both"):
        BalancedBCELoss(pos_weights="auto", neg_weights=[1, 2, 3])
