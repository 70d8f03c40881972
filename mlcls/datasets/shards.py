"""WebDataset tar shards: data that lives in object storage, read as a stream.

Written by ``tools/make_shards.py`` (:func:`write_shards`), a shard folder holds

- ``shard-000000.tar`` ...: samples ``{key}.{ext}`` (the image bytes as stored) and
  ``{key}.labels.json`` (``{"pos": [class ids], "neg": [verified-negative class ids], "ignore":
  [ids marked unknown]}``; other classes take the index's ``unlisted`` value); keys are
  the sample's global number, shards hold consecutive numbers;
- ``index.json``: the class list, the value of unlisted entries, each shard's name and sample
  count, the label counts (``label_stats``) and where the data came from;
- ``labels.npz``: the same labels as CSR arrays in sample order, so counts, ``auto`` loss weights
  and repeat factors are known before a single shard is opened.

:class:`WebDatasetShards` reads them from local paths or any URL the ``webdataset`` package opens
(``pipe:`` commands for object storage: ``shard_url: "pipe:aws s3 cp s3://bucket/shards/{name} -"``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from mlcls.datasets.base import MultiLabelDataset
from mlcls.datasets.image_io import load_image_bytes
from mlcls.datasets.labels import LabelIndex
from mlcls.datasets.samplers import repeat_factors
from mlcls.datasets.transforms import build_pipeline
from mlcls.errors import CheckpointError, ConfigError, DataError
from mlcls.registry import DATASETS
from mlcls.utils.dist import get_rank, get_world_size

logger = logging.getLogger("mlcls")

FORMAT = "mlcls-shards-1"


def parse_size(text: str | int) -> int:
    """``500MB``, ``2GB``, ``64k`` or a number of bytes -> bytes."""
    if isinstance(text, int):
        text = f"{text}b"
    units = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "g": 1 << 30, "gb": 1 << 30}
    t = str(text).strip().lower()
    num = t.rstrip("kmgb")
    try:
        size = int(float(num) * units[t[len(num) :]])
    except (ValueError, KeyError):
        raise ConfigError(f"--shard-size: expected a size such as 500MB, 2GB or 64KB, got {text!r}") from None
    if size <= 0:
        raise ConfigError(f"--shard-size: expected a positive size such as 500MB (100MB-1GB is usual), got {text!r}")
    return size


def write_shards(dataset: MultiLabelDataset, out: str | os.PathLike, shard_size: int, seed: int = 0, source: dict | None = None) -> dict:
    """Write ``dataset`` as tar shards of about ``shard_size`` bytes into the new folder ``out``.

    Samples are written in a seeded random order (a shard is then a random sample of the data,
    which streaming with a small shuffle buffer relies on). The folder appears only when complete:
    everything is written to ``<out>.partial`` first and renamed at the end.

    Returns:
        The index (also written as ``index.json``).
    """
    import webdataset as wds

    out = Path(out)
    if out.exists():
        raise ConfigError(f"{out} already exists; choose a new folder (shards are never mixed or overwritten in place)")
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    n = len(dataset)
    order = np.random.default_rng(seed).permutation(n)
    sizes = [os.path.getsize(dataset.image_path(int(i))) for i in order[: min(n, 1000)]]
    per_shard = max(1, int(shard_size // max(1, np.mean(sizes) + 1024)))  # + tar headers and the label record
    count = -(-n // per_shard)
    bounds = np.linspace(0, n, count + 1).round().astype(np.int64)  # sizes within one of each other
    shards, paths = [], []
    offsets, ids, vals = [0], [], []
    try:
        for start, stop in zip(bounds[:-1], bounds[1:]):
            name = f"shard-{len(shards):06d}.tar"
            members = order[start:stop]
            with wds.TarWriter(str(partial / name), format=tarfile.USTAR_FORMAT) as sink:  # no pax header per member
                for g, i in enumerate(members, start):
                    path = dataset.image_path(int(i))
                    lo, hi = dataset.offsets[i], dataset.offsets[i + 1]
                    cls, val = dataset.label_ids[lo:hi], dataset.label_vals[lo:hi]
                    labels = {"pos": cls[val == 1].tolist(), "neg": cls[val == 0].tolist(), "ignore": cls[val == -1].tolist()}
                    ext = Path(path).suffix.lower().lstrip(".") or "jpg"
                    with open(path, "rb") as f:
                        sink.write({"__key__": f"{g:09d}", ext: f.read(), "labels.json": json.dumps(labels).encode()})
                    paths.append(os.path.relpath(path, dataset.data_root) if dataset.data_root else path)
                    ids.append(cls)
                    vals.append(val)
                    offsets.append(offsets[-1] + len(cls))
            shards.append({"name": name, "num_samples": len(members), "bytes": (partial / name).stat().st_size})
        index = LabelIndex(paths, offsets, np.concatenate(ids) if ids else [], np.concatenate(vals) if vals else [])
        index.save(partial / "labels.npz")
        labels = MultiLabelDataset.from_index(index, dataset.classes)
        labels.unlisted = dataset.unlisted
        stats = labels.label_stats()
        index = {
            "format": FORMAT,
            "classes": list(dataset.classes),
            "unlisted": int(dataset.unlisted),
            "num_samples": n,
            "shards": shards,
            "label_stats": {"num_samples": stats["num_samples"], "pos": stats["pos"], "neg": stats["neg"]},
            "source": source or {},
            "seed": seed,
        }
        (partial / "index.json").write_text(json.dumps(index))
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return index


@DATASETS.register_module()
class WebDatasetShards(IterableDataset):
    """A shard folder written by ``tools/make_shards.py``, streamed.

    Each epoch the shards are shuffled with ``(seed, epoch)`` and dealt to the ranks, each rank
    gets ``S // world_size`` of them (the ``S % world_size`` left over rotate from epoch to epoch)
    and its DataLoader workers split its shards among themselves. No sample is read twice in an
    epoch, and every rank and worker yields the same, known number of samples (``len``): each
    shard gives the smallest shard's count (``make_shards`` writes them within one sample of each
    other), so at most a sample per shard waits for a later epoch.
    With ``oversample_thr``, samples are repeated by their LVIS repeat factor (from the labels in
    ``labels.npz``; the number of copies of each shard is fixed, which samples get the fractional
    extra copy is drawn per epoch). Evaluation (``return_index``) reads every sample once, in order.

    Resuming: the epoch's order is a function of ``(seed, epoch)``, so a run resumed from a
    checkpoint saved at the end of an epoch continues exactly; a stream cannot skip to the middle
    of an epoch, so a mid-epoch checkpoint is refused (leave ``CheckpointHook.interval_iters`` off).

    Args:
        index: the shard folder's ``index.json`` (a local file; shards may live elsewhere).
        pipeline: transform configs applied to the decoded uint8 image [3, H, W].
        shard_url: where shard ``{name}`` is read from: a path or URL template, e.g.
            ``"pipe:aws s3 cp s3://bucket/shards/{name} -"`` (default: beside the index).
        shuffle_buffer: samples mixed within a worker's stream (0: shard order only); the buffer
            holds the encoded file bytes, images are decoded as they leave it.
        oversample_thr: repeat-factor threshold ``t`` (None: no repeats); the frequencies count
            verified labels when the data has unknown entries.
        seed: base seed of the shard order, the shuffle buffer and the repeats.
    """

    return_index = False
    training = True  # (LabelledDataset) shards hold single images: nothing to subsample
    num_bad_images = 0  # (LabelledDataset) an unreadable image in a shard stops the run: none is skipped
    bags = False

    def __init__(
        self,
        index: str,
        pipeline=None,
        shard_url: str | None = None,
        shuffle_buffer: int = 1000,
        oversample_thr: float | None = None,
        seed: int = 0,
        data_root: str = "",
    ) -> None:
        path = Path(data_root, index) if data_root and not os.path.isabs(index) else Path(index)
        if not path.is_file():
            raise DataError(f"shard index not found: {path} (write shards with tools/make_shards.py)")
        self.index = json.loads(path.read_text(encoding="utf-8"))
        if self.index.get("format") != FORMAT:
            raise DataError(f"{path}: not an mlcls shard index (format {self.index.get('format')!r}, expected {FORMAT!r})")
        self.folder = path.parent
        self.shard_url = shard_url or str(self.folder / "{name}")
        self.labels = MultiLabelDataset.from_index(LabelIndex.load(self.folder / "labels.npz"), self.index["classes"])
        self.labels.unlisted = int(self.index["unlisted"])
        self.classes = list(self.index["classes"])
        self.unlisted = self.labels.unlisted
        counts = np.array([s["num_samples"] for s in self.index["shards"]], dtype=np.int64)
        self.shard_start = np.concatenate([[0], np.cumsum(counts)])
        if self.shard_start[-1] != len(self.labels):
            raise DataError(f"{path}: the shards hold {self.shard_start[-1]} samples, labels.npz {len(self.labels)}")
        self.pipeline = pipeline if callable(pipeline) else build_pipeline(pipeline or [])
        self.shuffle_buffer, self.seed, self.epoch = int(shuffle_buffer), int(seed), 0
        self.factors = None
        if oversample_thr:
            self.factors = repeat_factors(self.labels, float(oversample_thr))
        self.batch_size, self.num_workers = 1, 0
        self._place()

    # -- what the trainer and the losses ask a dataset ------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def label_stats(self) -> dict:
        return self.labels.label_stats()

    def class_counts(self) -> np.ndarray:
        return self.labels.class_counts()

    def class_frequency(self) -> np.ndarray:
        return self.labels.class_frequency()

    def image_path(self, idx: int) -> str:
        """The image's path in the data the shards were written from (a name for reports)."""
        return self.labels.label_index.paths[idx].decode("utf-8")

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Read ``epoch``'s plan next; a stream cannot start after ``skip`` batches (an error when > 0)."""
        if skip:
            raise CheckpointError(
                f"this checkpoint was saved inside epoch {epoch + 1} (after {skip} batches); a shard stream cannot "
                "skip to the middle of an epoch: resume from a checkpoint saved at the end of an epoch (epoch_N.pth) "
                "and leave CheckpointHook.interval_iters off"
            )
        self.epoch = int(epoch)
        self._place()

    def configure_loader(self, batch_size: int, num_workers: int) -> None:
        """Called by ``build_dataloader``: the length of an epoch counts whole batches per worker."""
        self.batch_size, self.num_workers = max(1, int(batch_size)), int(num_workers)
        self._place()

    def _place(self) -> None:
        # read in the rank's own process: DataLoader workers are not members of the process
        # group (get_rank() there says 0), they get these values with the pickled dataset
        self.rank, self.world = get_rank(), get_world_size()

    # -- the epoch plan --------------------------------------------------------------------------
    def _shard_totals(self) -> np.ndarray:
        """Samples each shard would yield in an epoch with repeats (the same every epoch):
        ``sum(floor(r)) + round(sum(frac(r)))`` over its samples."""
        if self.factors is None:
            return np.diff(self.shard_start)
        base, frac = np.floor(self.factors), self.factors - np.floor(self.factors)
        starts = self.shard_start[:-1]
        return (np.add.reduceat(base, starts) + np.round(np.add.reduceat(frac, starts))).astype(np.int64)

    def _copies(self, epoch: int) -> np.ndarray | None:
        """Copies of each sample this epoch, int64 [N]; every shard sums to the same ``take``.

        Each sample gets ``floor(r)`` copies plus one more with probability about ``frac(r)``
        (systematic sampling inside its shard, with a fresh random start and order every epoch;
        the shard's ``round(sum frac)`` extras put the probabilities off by that rounding, under
        1 % for shards of a few thousand images); then copies are removed at random until the
        shard holds ``take``, the smallest shard's total. None without repeats.
        """
        if self.factors is None:
            return None
        rng = np.random.default_rng([self.seed, epoch, 7])
        take = int(self._shard_totals().min())
        copies = np.floor(self.factors).astype(np.int64)
        for lo, hi in zip(self.shard_start[:-1], self.shard_start[1:]):
            frac = self.factors[lo:hi] - copies[lo:hi]
            k = int(round(float(frac.sum())))
            if k:
                order = rng.permutation(hi - lo)
                p = np.minimum(1.0, frac[order] * (k / frac.sum()))
                steps = np.floor(np.cumsum(p) + rng.random()).astype(np.int64)  # systematic sampling
                chosen = order[np.diff(steps, prepend=0) > 0]
                copies[lo + chosen] += 1
            drop = int(copies[lo:hi].sum()) - take
            if drop > 0:
                pool = np.repeat(np.arange(hi - lo), copies[lo:hi])
                np.subtract.at(copies, lo + rng.choice(pool, size=drop, replace=False), 1)
        return copies

    def plan(self, epoch: int, rank: int, world: int) -> list[tuple[int, int]]:
        """This rank's ``(shard, samples to take from it)`` for ``epoch``, in reading order.

        Training: ``S // world`` shards of a ``(seed, epoch)`` permutation, each giving the
        smallest shard's count (shards are written within one sample of each other; with repeat
        factors their totals differ a little more), so every rank and every worker yields the same
        number every epoch. Evaluation: every shard once, whole, dealt to the ranks in turn.
        """
        s = len(self.shard_start) - 1
        counts = np.diff(self.shard_start)
        if self.return_index:
            return [(j, int(counts[j])) for j in range(rank, s, world)]
        if s < world:
            raise DataError(f"{s} shards for {world} ranks: write smaller shards (tools/make_shards.py --shard-size)")
        take = int(self._shard_totals().min())
        order = np.random.default_rng([self.seed, epoch]).permutation(s)
        return [(int(j), take) for j in order[rank::world][: s // world]]

    def __len__(self) -> int:
        """Samples this rank yields per epoch, counted in whole batches of each DataLoader worker."""
        self._place()
        plan = self.plan(self.epoch, self.rank, self.world)
        workers = max(self.num_workers, 1)
        per_worker = [sum(t for _, t in plan[w::workers]) for w in range(workers)]
        return sum(-(-n // self.batch_size) for n in per_worker) * self.batch_size

    # -- reading ---------------------------------------------------------------------------------
    def __iter__(self):
        import webdataset as wds

        if get_worker_info() is None:  # read in the main process: it is the rank's own
            self._place()
        rank, world = self.rank, self.world
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        mine = self.plan(self.epoch, rank, world)[worker :: max(workers, 1)]
        copies = None if self.return_index else self._copies(self.epoch)
        rng = np.random.default_rng([self.seed, self.epoch, rank, worker])
        stream = self._samples(mine, copies, wds)
        if self.shuffle_buffer > 1 and not self.return_index:  # the buffer holds file bytes, decoded on the way out
            stream = _shuffled(stream, self.shuffle_buffer, rng)
        for g, sample, url in stream:
            image, target = self._decode(sample, url)
            image = self.pipeline(image)
            yield (image, target, g) if self.return_index else (image, target)

    def _samples(self, mine, copies, wds):
        for j, budget in mine:
            url = self.shard_url.format(name=self.index["shards"][j]["name"])
            lo, hi = int(self.shard_start[j]), int(self.shard_start[j + 1])
            yielded = 0
            for sample in _tar_samples(url, wds):
                g = int(sample["__key__"])
                if not lo <= g < hi:  # the index's counts no longer describe the shards (edited, or another set's)
                    raise DataError(
                        f"{url}: holds sample {g}, but the index says this shard holds samples {lo}..{hi - 1}; the index does "
                        "not match the shards (edited counts?): write them again with tools/make_shards.py"
                    )
                n = 1 if copies is None else int(copies[g])
                if n == 0:
                    continue
                for _ in range(n):
                    if yielded == budget:
                        break
                    yield g, sample, url
                    yielded += 1
                if yielded == budget:
                    break
            if yielded < budget:
                raise DataError(
                    f"{url}: ended after {yielded} samples, the index promised {budget}; the index does not match the shards "
                    "(edited counts, or a shard cut short?): write them again with tools/make_shards.py"
                )

    def _decode(self, sample: dict, url: str):
        key = sample["__key__"]
        labels = json.loads(sample["labels.json"])
        image_key = next((k for k in sample if k not in ("__key__", "__url__", "labels.json") and not k.startswith("_")), None)
        if image_key is None:
            raise DataError(f"{url}: sample {key} has no image")
        target = torch.full((self.num_classes,), float(self.unlisted))
        target[labels["neg"]] = 0.0
        target[labels.get("ignore", [])] = -1.0
        target[labels["pos"]] = 1.0
        return load_image_bytes(sample[image_key], f"{url}:{key}.{image_key}"), target


def _tar_samples(url: str, wds):
    """Samples (``{"__key__": key, ext: bytes, ...}``) of one tar, opened through webdataset's URL
    opener (paths, http(s), ``pipe:`` commands). The members are parsed here, not by ``tarfile``:
    shards hold plain files, and a 512-byte header read per member is several times cheaper than
    ``tarfile``'s general machinery, which dominated the time of small images."""
    try:
        stream = wds.gopen(url, "rb")
    except FileNotFoundError:
        raise DataError(f"shard not found: {url} (it is listed in the shard index; was it moved or deleted?)") from None
    try:
        sample: dict = {}
        for name, data in _tar_members(stream, url):
            key, _, ext = name.rpartition("/")[2].partition(".")
            if sample and key != sample["__key__"]:
                yield sample
                sample = {}
            sample["__key__"] = key
            sample[ext.lower()] = data
        if sample:
            yield sample
    finally:
        stream.close()


def _tar_members(stream, url: str):
    """(name, bytes) of the regular files of a tar stream (ustar, GNU or pax headers)."""
    pax_name = None
    while True:
        header = _read_exactly(stream, 512, url)
        if header is None or header == b"\0" * 512:
            return
        size_field = header[124:136].strip(b"\0 ")
        try:
            size = int(size_field, 8) if size_field else 0
        except ValueError:
            raise DataError(f"{url}: not a tar file (bad header)") from None
        kind = header[156:157]
        data = _read_exactly(stream, size + (-size % 512), url, required=True)[:size]
        if kind in (b"x", b"g"):  # pax extended header: may carry a long name
            for record in data.split(b"\n"):
                if b" path=" in record:
                    pax_name = record.split(b" path=", 1)[1].decode("utf-8")
            continue
        if kind == b"L":  # GNU long name
            pax_name = data.rstrip(b"\0").decode("utf-8")
            continue
        name = header[:100].rstrip(b"\0").decode("utf-8")
        prefix = header[345:500].rstrip(b"\0") if header[257:262] == b"ustar" else b""
        if prefix:
            name = prefix.decode("utf-8") + "/" + name
        name, pax_name = pax_name or name, None
        if kind in (b"0", b"\0"):
            yield name, data


def _read_exactly(stream, n: int, url: str, required: bool = False) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = stream.read(n - len(buf))
        if not chunk:
            if buf or required:
                raise DataError(f"{url}: the tar file ends in the middle of a member (cut short?)")
            return None
        buf += chunk
    return buf


def _shuffled(stream, size: int, rng: np.random.Generator):
    buf = []
    for item in stream:
        buf.append(item)
        if len(buf) >= size:
            i = int(rng.integers(len(buf)))
            buf[i], buf[-1] = buf[-1], buf[i]
            yield buf.pop()
    while buf:
        i = int(rng.integers(len(buf)))
        buf[i], buf[-1] = buf[-1], buf[i]
        yield buf.pop()
