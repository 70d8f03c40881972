import pytest
import torch

from mlcls.apis import build_trainer, train_model
from mlcls.apis.test import build_from_checkpoint
from mlcls.models.heads import LabelPowersetHead

STATS = {"num_samples": 10, "pos": [5, 4, 2], "neg": [5, 6, 8], "combinations": [[[0], 4], [[1], 3], [[], 1], [[0, 1], 1], [[2], 1]]}


def test_encode_decode_round_trip_for_kept_combinations():
    head = LabelPowersetHead(num_classes=3, in_channels=4, min_count=1, label_stats=STATS)
    assert head.num_combinations == 5
    targets = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 0], [1, 1, 0], [0, 0, 1]])
    idx = head.encode(targets)
    assert idx.tolist() == [0, 1, 2, 3, 4]
    one_hot = torch.nn.functional.one_hot(idx, 5).float()
    torch.testing.assert_close(head.decode(one_hot), targets)  # decode(encode(t)) == t


def test_rare_combinations_fold_into_the_nearest_frequent_one():
    head = LabelPowersetHead(num_classes=3, in_channels=4, min_count=2, label_stats=STATS)
    assert head.combinations.tolist() == [[1, 0, 0], [0, 1, 0]]
    # {0,1} is one label away from both kept sets: the more frequent {0} wins the tie
    # {} is one away from both too -> {0}; {2} likewise; an ignored entry does not count
    t = torch.tensor([[1.0, 1, 0], [0, 0, 0], [0, 0, 1], [-1, 1, 0]])
    assert head.encode(t).tolist() == [0, 0, 0, 1]


def test_scores_are_summed_combination_probabilities():
    head = LabelPowersetHead(num_classes=3, in_channels=4, label_stats=STATS)
    probs = torch.tensor([[0.1, 0.2, 0.3, 0.25, 0.15]])
    torch.testing.assert_close(head.decode(probs), torch.tensor([[0.35, 0.45, 0.15]]))
    scores = head.predict(torch.randn(6, 4))
    assert scores.shape == (6, 3) and (scores >= 0).all() and (scores <= 1 + 1e-6).all()


def test_tiny_training_run_and_rebuild_from_checkpoint(make_config, tmp_path):
    cfg = make_config(tmp_path / "ps", max_epochs=1)
    cfg["model"]["head"] = {"type": "LabelPowersetHead", "min_count": 2}
    trainer = build_trainer(cfg)
    k = trainer.model.head.num_combinations
    assert 2 <= k < 2**10
    metrics = train_model(cfg)
    assert 0 < metrics["mAP"] <= 100 and "CF1" in metrics  # the multi-label evaluator applies unchanged
    model, ckpt, _ = build_from_checkpoint(tmp_path / "ps/latest.pth")  # no label counts at test time
    assert model.head.num_combinations == k
    torch.testing.assert_close(model.head.combinations, trainer.model.head.combinations)


def test_needs_some_combination():
    with pytest.raises(Exception, match="no label combination"):
        LabelPowersetHead(num_classes=3, in_channels=4, min_count=100, label_stats=STATS)
