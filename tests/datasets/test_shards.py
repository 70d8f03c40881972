"""WebDataset shards: tools/make_shards.py, WebDatasetShards read under 2 DataLoader workers and 2
real gloo ranks, repeat factors and auto weights from the index, training and exact resume."""

from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest
import torch

from mlcls.datasets import CSVDataset, WebDatasetShards, build_dataloader
from mlcls.errors import CheckpointError
from tests.conftest import tiny_config
from tests.ddp import spawn

PIPE = [{"type": "ToFloatNormalize", "mean": [0.5] * 3, "std": [0.25] * 3}]


@pytest.fixture(scope="module")
def shards(shapes_root, tmp_path_factory):
    """The tiny shapes train split (96 images) as shards of about 8 images."""
    import yaml

    base = tmp_path_factory.mktemp("shards")
    cfg = tiny_config(shapes_root, base / "unused")
    (base / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    import subprocess
    import sys

    from tests.conftest import ROOT

    r = subprocess.run(
        [sys.executable, "tools/make_shards.py", base / "tiny.yaml", "--split", "train", "--out", base / "out", "--shard-size", "10KB"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return base / "out"


def source(shapes_root):
    return CSVDataset(str(shapes_root / "train.csv"), str(shapes_root / "classes.txt"), data_root=str(shapes_root))


def test_shards_hold_every_image_once_with_its_labels(shards, shapes_root):
    ds = source(shapes_root)
    index = json.loads((shards / "index.json").read_text())
    assert index["num_samples"] == 96 and index["classes"] == ds.classes and index["unlisted"] == 0
    counts = [s["num_samples"] for s in index["shards"]]
    assert sum(counts) == 96 and max(counts) - min(counts) <= 1 and len(counts) >= 8
    by_path = {ds.image_path(i): i for i in range(len(ds))}
    seen = set()
    for s in index["shards"]:
        with tarfile.open(shards / s["name"]) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        keys = sorted({name.split(".")[0] for name in members})
        assert len(keys) == s["num_samples"]
        for key in keys:
            labels = json.loads(members[f"{key}.labels.json"])
            path = str(shapes_root / WebDatasetShards(str(shards / "index.json")).image_path(int(key)))
            i = by_path[path]
            assert members[f"{key}.png"] == open(path, "rb").read()  # the bytes as stored
            assert sorted(labels["pos"]) == torch.nonzero(ds.get_target(i) == 1).flatten().tolist()
            seen.add(i)
    assert len(seen) == 96
    stream = WebDatasetShards(str(shards / "index.json"))
    assert stream.label_stats()["pos"] == ds.label_stats()["pos"] and stream.label_stats()["neg"] == ds.label_stats()["neg"]


def test_two_workers_read_each_sample_at_most_once_in_a_known_length(shards):
    ds = WebDatasetShards(str(shards / "index.json"), pipeline=PIPE, shuffle_buffer=16, seed=1)
    ds.return_index = False
    loader = build_dataloader({"dataset": None, "batch_size": 4, "num_workers": 2}, dataset=ds)
    ds.set_epoch(0)
    batches = list(loader)
    assert len(batches) == len(loader)  # the length was known up front
    # which samples: through a twin that yields indices (training order, indices added for the test)
    twin = WebDatasetShards(str(shards / "index.json"), pipeline=PIPE, shuffle_buffer=16, seed=1)
    twin._with_keys = True
    epoch0, epoch0_again, epoch1 = (list(_keys(twin, e, workers=2)) for e in (0, 0, 1))
    assert len(epoch0) == len(set(epoch0)) == sum(len(b[0]) for b in batches)
    assert epoch0 == epoch0_again  # (seed, epoch) fixes the order: a resumed run replays it
    assert epoch0 != epoch1 and len(epoch1) == len(epoch0)


def _keys(ds, epoch, workers):
    ds.set_epoch(epoch)
    from torch.utils.data import DataLoader

    ds.configure_loader(1, workers)
    loader = DataLoader(_Keys(ds), batch_size=None, num_workers=workers)
    return [int(k) for k in loader]


class _Keys(torch.utils.data.IterableDataset):
    """The sample numbers a WebDatasetShards stream yields, in its training order."""

    def __init__(self, ds):
        self.ds = ds

    def __iter__(self):
        import webdataset as wds

        from mlcls.datasets.shards import _shuffled

        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        mine = self.ds.plan(self.ds.epoch, self.ds.rank, self.ds.world)[worker::workers]
        stream = self.ds._samples(mine, self.ds._copies(self.ds.epoch), wds)
        rng = np.random.default_rng([self.ds.seed, self.ds.epoch, self.ds.rank, worker])
        if self.ds.shuffle_buffer > 1:
            stream = _shuffled(stream, self.ds.shuffle_buffer, rng)
        for g, _, _ in stream:
            yield g


def rank_worker(rank, world, index, out):
    ds = WebDatasetShards(index, pipeline=PIPE, seed=2)
    keys = {e: _keys(ds, e, workers=2) for e in (0, 1)}
    ds.configure_loader(4, 2)
    with open(f"{out}.{rank}", "w") as f:
        json.dump({"keys": keys, "len": len(ds)}, f)


def test_two_ranks_and_two_workers_split_the_shards(shards, tmp_path):
    spawn(rank_worker, 2, (str(shards / "index.json"), str(tmp_path / "k")))
    r0, r1 = (json.loads((tmp_path / f"k.{r}").read_text()) for r in (0, 1))
    assert r0["len"] == r1["len"]  # every rank runs the same number of steps
    for e in ("0", "1"):
        a, b = r0["keys"][e], r1["keys"][e]
        assert len(a) == len(b) and len(set(a)) == len(a) and not set(a) & set(b)  # disjoint, no repeats
        assert len(a) + len(b) >= 96 - 2 * 8  # at most a shard per rank waits for a later epoch
    assert r0["keys"]["0"] != r0["keys"]["1"]


def test_repeat_factors_from_the_index(shapes_root, tmp_path):
    from mlcls.datasets import repeat_factors
    from mlcls.datasets.shards import write_shards

    write_shards(source(shapes_root), tmp_path / "big", shard_size=48 * 1300)  # two shards of 48 images
    ds = WebDatasetShards(str(tmp_path / "big" / "index.json"), oversample_thr=0.3, seed=0)
    expected = repeat_factors(
        source(shapes_root).__class__.from_index(ds.labels.label_index, ds.classes),
        0.3,
    )
    assert np.allclose(ds.factors, expected)
    totals = []
    mean_copies = np.zeros(len(ds.factors))
    for epoch in range(200):
        copies = ds._copies(epoch)
        totals.append(int(copies.sum()))
        mean_copies += copies / 200
    shards_n = len(ds.shard_start) - 1
    assert totals == [int(ds._shard_totals().min()) * shards_n] * 200  # every shard the same total, every epoch
    assert totals[0] <= expected.sum() + shards_n
    # copies follow the repeat factors (small shards lose more to the equal-totals cut than
    # real ones of thousands of images)
    assert np.corrcoef(mean_copies, expected)[0, 1] > 0.9
    assert mean_copies[expected > 1.5].mean() > 1.3 * mean_copies[expected == 1].mean()


def test_train_on_shards_and_resume_exactly(shards, shapes_root, tmp_path):
    from mlcls.apis import train_model

    def cfg(work):
        c = tiny_config(shapes_root, work, max_epochs=2)
        c["train_dataloader"] = {"batch_size": 16, "num_workers": 2,
                                 "dataset": {"type": "WebDatasetShards", "index": str(shards / "index.json"), "pipeline": PIPE, "shuffle_buffer": 32}}  # fmt: skip
        c["model"]["head"]["loss"]["pos_weight"] = "auto"  # from the index's label counts
        return c

    train_model(cfg(tmp_path / "full"))
    c = cfg(tmp_path / "part")
    c["train_cfg"]["max_epochs"] = 1
    train_model(c)
    train_model(cfg(tmp_path / "part"), resume=str(tmp_path / "part" / "epoch_1.pth"))

    def losses(wd):
        return [r["loss"] for r in map(json.loads, (wd / "scalars.jsonl").read_text().splitlines()) if r["mode"] == "train"]

    assert losses(tmp_path / "full") == losses(tmp_path / "part")  # resumed at the epoch boundary: the same run
    ckpt = torch.load(tmp_path / "full" / "latest.pth", weights_only=True)
    assert ckpt["meta"]["train_counts"]["pos"] == source(shapes_root).label_stats()["pos"]
    # a checkpoint from inside an epoch cannot be resumed on a stream
    ckpt = torch.load(tmp_path / "part" / "epoch_1.pth", weights_only=True)
    ckpt["meta"]["inner_iter"] = 2
    torch.save(ckpt, tmp_path / "mid.pth")
    with pytest.raises(CheckpointError, match="a shard stream cannot skip to the middle of an epoch"):
        train_model(cfg(tmp_path / "mid"), resume=str(tmp_path / "mid.pth"))


def test_make_shards_refuses_an_existing_folder_and_leaves_nothing_half_written(shards, run_tool, tmp_path, shapes_root):
    import yaml

    cfg = tiny_config(shapes_root, tmp_path / "unused")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = run_tool("tools/make_shards.py", tmp_path / "c.yaml", "--out", shards)
    assert r.returncode == 2 and "already exists" in r.stderr
    r = run_tool("tools/make_shards.py", tmp_path / "c.yaml", "--out", tmp_path / "new", "--shard-size", "lots")
    assert r.returncode == 2 and "--shard-size: expected a size such as 500MB" in r.stderr
    assert not (tmp_path / "new").exists() and not (tmp_path / "new.partial").exists()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "index.json").write_text('{"format": "other"}')
    with pytest.raises(Exception, match="not an mlcls shard index"):
        WebDatasetShards(str(tmp_path / "bad" / "index.json"))


def test_an_edited_index_or_a_deleted_shard_is_one_line(shards, tmp_path):
    import shutil

    from mlcls.errors import DataError

    edited = tmp_path / "edited"
    shutil.copytree(shards, edited)
    index = json.loads((edited / "index.json").read_text())
    index["shards"][0]["num_samples"] += 1  # the counts still add up, so only reading can tell
    index["shards"][1]["num_samples"] -= 1
    (edited / "index.json").write_text(json.dumps(index))
    with pytest.raises(DataError, match=r"(holds sample \d+, but the index says|ended after \d+ samples, the index promised).*make_shards"):
        list(WebDatasetShards(str(edited / "index.json"), shuffle_buffer=1))
    gone = tmp_path / "gone"
    shutil.copytree(shards, gone)
    (gone / index["shards"][2]["name"]).unlink()
    with pytest.raises(DataError, match=rf"shard not found: .*{index['shards'][2]['name']} \(it is listed in the shard index"):
        list(WebDatasetShards(str(gone / "index.json"), shuffle_buffer=1))


def test_check_dataset_reads_a_shards_config(shards, run_tool, tmp_path):
    """tools/check_dataset.py on a config whose training set is shards: their labels are checked,
    not refused for options a stream does not take."""
    import yaml

    cfg = {"train_dataloader": {"dataset": {"type": "WebDatasetShards", "index": str(shards / "index.json")}}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = run_tool("tools/check_dataset.py", tmp_path / "c.yaml", "--split", "train")
    assert r.returncode == 0, r.stderr
    assert "[train] WebDatasetShards: 96 samples, 10 classes" in r.stdout
