import numpy as np
import pytest

from mlcls.apis.analyze import dataset_statistics
from mlcls.datasets import CSVDataset
from mlcls.datasets.stats import cooccurrence


@pytest.fixture
def ds(tmp_path):
    rows = ["0.png,a b", "1.png,a", "2.png,a c", "3.png,", "4.png,b", "5.png,a b c"]
    (tmp_path / "l.csv").write_text("filename,labels\n" + "\n".join(rows) + "\n")
    return CSVDataset(tmp_path / "l.csv", classes=["a", "b", "c", "d"], data_root=str(tmp_path), check_files=False)


def test_cooccurrence_equals_dense_product(ds):
    x = ds.dense_targets(range(len(ds))).astype(np.int64)
    np.testing.assert_array_equal(cooccurrence(ds), x.T @ x)
    np.testing.assert_array_equal(cooccurrence(ds, chunk=2), x.T @ x)  # chunking changes nothing


def test_statistics_by_hand(ds):
    s = dataset_statistics(ds, oversample_thr=0.5)
    assert s["num_images"] == 6 and s["images_without_labels"] == 1
    assert s["labels_per_image"] == {"mean": pytest.approx(9 / 6), "max": 3, "histogram": [1, 2, 2, 1]}
    assert [c["name"] for c in s["classes"]] == ["a", "b", "c", "d"]
    assert [c["count"] for c in s["classes"]] == [4, 3, 2, 0]
    assert s["classes"][0]["pos_weight"] == pytest.approx(2 / 4)
    assert s["classes"][2]["repeat_factor"] == pytest.approx(np.sqrt(0.5 / (2 / 6)))
    assert s["imbalance_ratio"] == 2.0 and s["classes_without_positives"] == ["d"]
    assert s["classes"][3]["repeat_factor"] is None and s["classes"][3]["pos_weight"] is None  # nothing to repeat or weigh
    assert s["top_pairs"][0] == {"pair": ["a", "b"], "count": 2}
    # predicting nothing: 9 positive entries out of 24 are missed, the rest is "accurate"
    assert s["all_zeros_baseline"]["element_accuracy"] == pytest.approx(15 / 24 * 100)
    assert s["all_zeros_baseline"]["recall"] == 0.0
