"""Repeat-factor sampling against the LVIS formula, worked by hand."""

import math

import numpy as np
import pytest
import torch

from mlcls.datasets import ClassBalancedDataset, CSVDataset, RepeatFactorSampler, repeat_factors


@pytest.fixture
def labels_only(tmp_path):
    """10 images over classes a, b, c: a in 8 images, b in 2, c in 1, one image without labels."""
    rows = ["0.png,a", "1.png,a", "2.png,a", "3.png,a", "4.png,a", "5.png,a b", "6.png,a", "7.png,a c", "8.png,b", "9.png,"]
    (tmp_path / "l.csv").write_text("filename,labels\n" + "\n".join(rows) + "\n")
    return CSVDataset(tmp_path / "l.csv", classes=["a", "b", "c"], data_root=str(tmp_path), check_files=False)


def test_repeat_factors_match_hand_computed_lvis(labels_only):
    t = 0.5
    # f(a)=0.8 -> r=1 ; f(b)=0.2 -> r=sqrt(0.5/0.2) ; f(c)=0.1 -> r=sqrt(5)
    rb, rc = math.sqrt(0.5 / 0.2), math.sqrt(0.5 / 0.1)
    expected = [1, 1, 1, 1, 1, rb, 1, rc, rb, 1]  # image 7 has a and c: max; image 9: no labels -> 1
    np.testing.assert_allclose(repeat_factors(labels_only, t), expected)


def test_stochastic_rounding_is_deterministic_per_epoch_and_varies_across_epochs(labels_only):
    s = RepeatFactorSampler(labels_only, oversample_thr=0.5, seed=3)
    s.set_epoch(0)
    a = list(s)
    b = list(RepeatFactorSampler(labels_only, oversample_thr=0.5, seed=3).__iter__())
    assert a == b
    s.set_epoch(1)
    assert list(s) != a
    assert len(a) == len(s) == round(repeat_factors(labels_only, 0.5).sum())  # fixed epoch length


def test_rare_class_frequency_rises_as_expected(labels_only):
    s = RepeatFactorSampler(labels_only, oversample_thr=0.5, seed=0)
    m = labels_only.dense_targets(range(len(labels_only)))
    counts = np.zeros(3)
    epochs = 400
    for e in range(epochs):
        s.set_epoch(e)
        counts += m[list(s)].sum(0)
    r = repeat_factors(labels_only, 0.5)
    expected = (m * r[:, None]).sum(0) * len(s) / r.sum()  # expected draws scaled to the fixed length
    np.testing.assert_allclose(counts / epochs, expected, rtol=0.05)
    assert counts[2] / epochs > 2.0  # class c (1 image) now appears more than twice per epoch


def test_ddp_shares_are_disjoint_and_cover_the_epoch(labels_only):
    shares = []
    for rank in range(3):
        s = RepeatFactorSampler(labels_only, oversample_thr=0.5, seed=1)
        s.rank, s.world_size = rank, 3
        s.num_samples = -(-s.total // 3)
        s.set_epoch(5)
        shares.append(list(s))
    full = s.epoch_indices()
    assert len({len(x) for x in shares}) == 1
    positions = [set(range(r, len(full), 3)) for r in range(3)]
    assert not (positions[0] & positions[1]) and not (positions[1] & positions[2])  # disjoint slots
    assert sorted(sum(shares, [])) == sorted(full.tolist())  # together: the whole (padded) epoch


def test_class_balanced_dataset_uses_ceil(labels_only):
    ds = ClassBalancedDataset(labels_only, oversample_thr=0.5)
    r = repeat_factors(labels_only, 0.5)
    assert len(ds) == int(np.ceil(r).sum()) == 10 + 1 + 2 + 1
    assert ds.classes == ["a", "b", "c"] and ds.num_classes == 3
    assert list(ds.repeat_indices).count(7) == 3


def test_threshold_must_be_positive(labels_only):
    with pytest.raises(ValueError, match="oversample_thr"):
        RepeatFactorSampler(labels_only, oversample_thr=0)


def test_seeded_batches_do_not_depend_on_workers_and_skip_exactly(shapes_root):
    """Per-batch augmentation seeds: 0 or 2 workers give the same epoch; skipping k batches gives its tail."""
    import torch

    from mlcls.datasets import CSVDataset
    from mlcls.datasets.builder import build_dataloader

    pipe = [{"type": "RandomResizedCrop", "size": 24}, {"type": "RandomHorizontalFlip"}, {"type": "ToFloatNormalize"}]
    ds = CSVDataset("train.csv", "classes.txt", pipe, data_root=str(shapes_root))

    def epoch(workers, epoch=1, skip=0):
        loader = build_dataloader({"batch_size": 16, "num_workers": workers}, seed=7, dataset=ds, shuffle=True, seeded_batches=True)
        loader.batch_sampler.set_epoch(epoch, skip=skip)
        return [x for x, _ in loader]

    a, b = epoch(0), epoch(2)
    assert len(a) == 6 and all(torch.equal(x, y) for x, y in zip(a, b))
    assert all(torch.equal(x, y) for x, y in zip(a[2:], epoch(2, skip=2)))
    assert not torch.equal(epoch(0, epoch=2)[0], a[0])  # a new epoch draws new augmentations
    before = torch.random.get_rng_state()
    epoch(0)
    assert torch.equal(before, torch.random.get_rng_state())  # the main process's RNG is left alone


def test_class_balanced_dataset_speaks_one_index_space(shapes_root):
    base = CSVDataset(shapes_root / "train.csv", shapes_root / "classes.txt", data_root=str(shapes_root))
    ds = ClassBalancedDataset(base, oversample_thr=0.3)
    assert len(ds) > len(base)
    for i in range(len(ds)):  # the path and the target of index i are those of the sample ds[i] returns
        j = int(ds.repeat_indices[i])
        assert ds.image_path(i) == base.image_path(j)
        assert torch.equal(ds.get_target(i), ds[i][1]) and torch.equal(ds.get_target(i), base.get_target(j))
        assert ds.source(i) == base.source(j)
