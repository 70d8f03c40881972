"""Base multi-label dataset: image paths + compact (CSR) labels + a transform pipeline.

Targets are float tensors of shape [C]: 1 = positive, 0 = negative, -1 = unknown/ignored.
Labels are stored as flat arrays, not as a Python object per image, so a 1M-image index stays small
(paths: one UTF-8 byte array):
``offsets`` (int64 [N+1]), ``label_ids`` (int32 [nnz]) and ``label_vals`` (int8 [nnz]: 1, 0 for
a verified negative, -1 for ignored). Every entry that is not stored has the value
:attr:`MultiLabelDataset.unlisted`: 0 (negative) for the usual fully labelled sets, -1 (unknown)
for partially labelled ones such as Open Images; nothing builds a dense [N, C] matrix to say so.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import replace
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from mlcls.datasets.bags import LIST_SEPARATOR, bag_exists, check_view_names, is_bag_path, load_bag, subsample
from mlcls.datasets.cache import ImageCache
from mlcls.datasets.device_decode import DeviceDecode, EncodedImage
from mlcls.datasets.image_io import check_batch_sizes, load_image, read_jpeg
from mlcls.datasets.label_fixes import LabelFixes, check_fixes_key, read_label_fixes
from mlcls.datasets.labels import LabelIndex, LabelIndexBuilder, LabelStats, read_class_list, segment_reduce
from mlcls.datasets.samplers import fetch_seeded
from mlcls.datasets.transforms import build_pipeline, build_transform, split_final_normalize
from mlcls.errors import DataError
from mlcls.schema import SEED_MAX

logger = logging.getLogger("mlcls")


class MultiLabelDataset(Dataset):
    """Base class: subclasses parse their annotation format in :meth:`load_annotations`.

    Args:
        classes: class names, or a path to a text file with one name per line. Formats that carry
            their class list (COCO, mmcls JSON) may leave it ``None``.
        pipeline: list of transform configs (TRANSFORMS registry) or a ready callable, applied to
            the decoded uint8 image tensor [3, H, W].
        data_root: folder the image paths (and relative annotation / class-list paths) are
            relative to.
        check_files: verify at start-up that every listed image exists (one error listing the
            first missing ones) instead of failing mid-epoch.
        cache: decode every image once at start-up (after the pipeline's first step when that is
            a ``Resize``, which is deterministic) and keep the uint8 pixels in shared memory, so
            DataLoader workers read them instead of decoding every epoch. For data that fits in RAM.
        collect_errors: instead of stopping at the first bad annotation entry (unknown class,
            index out of range, malformed record), skip each and list it in
            :attr:`annotation_errors` (``tools/check_dataset.py`` reports them all).
        on_bad_image: ``raise`` (default): an unreadable image stops training with its path and
            annotation line; ``skip``: it is logged once, counted (:attr:`num_bad_images`, shown
            in the epoch log) and replaced by the next readable sample.
        views: a sample made of one bag of images per view (``[sagittal, coronal, axial]``): each
            path holds a ``{view}`` placeholder; see :mod:`mlcls.datasets.bags`.
        max_instances: at most this many instances per bag (per view): a random subset in
            training, evenly spaced ones in evaluation.
        holdout: carve a seeded hold-out out of these samples, multi-label stratified (iterative
            stratification, Sechidis et al. 2011): ``{fraction: 0.15, part: train|val, seed: 0}``;
            ``part: train`` keeps the rest, ``part: val`` the held-out samples, so a train and a
            val loader on the same split never share a sample (see :func:`holdout_rows`).
        folds: one fold of a seeded, multi-label stratified K-fold split of these samples (after
            ``holdout``): ``{k: 5, seed: 0, fold: 2, part: train|held}``; ``part: train`` keeps the
            other K-1 folds, ``held`` fold 2 alone (``tools/train.py --folds K`` sets it).
        label_fixes: a CSV (``path,class,label``; a relative path is relative to ``data_root``) of
            corrected labels, applied on top of the annotation file without editing it: ``label``
            1, 0, or -1 for "unknown" (left out of the loss and the metrics). Hold-outs and folds
            are cut on the file's labels first, so one fix file serves every part. A row naming a
            path or class the file does not have is an error naming its line (see
            :mod:`mlcls.datasets.label_fixes`).
        allow_outside_root: follow a symbolic link under ``data_root`` that leads outside it
            (refused by default, like a relative path with ``..`` that climbs out of it; paths
            listed as absolute are always taken as given).

    A dataset whose samples are bags (volumes, folders of images, ``a|b|c`` lists, or ``views``)
    has :attr:`bags` set; its samples are ``[S, 3, H, W]`` (or ``{view: ...}``) and its loaders
    pack them into a :class:`~mlcls.datasets.bags.BagBatch`.
    """

    #: samples are bags of images (set at start-up from ``views`` or the first path)
    bags = False
    #: training loaders draw a random subset of long bags; evaluation loaders set this to False
    training = True
    #: follow symbolic links that lead outside data_root (the constructor's argument)
    allow_outside_root = False

    def __init__(
        self,
        classes: Sequence[str] | str | None = None,
        pipeline: Sequence[dict] | Callable | None = None,
        data_root: str = "",
        check_files: bool = True,
        cache: bool = False,
        on_bad_image: str = "raise",
        collect_errors: bool = False,
        views: Sequence[str] | None = None,
        max_instances: int | None = None,
        allow_outside_root: bool = False,
        holdout: dict | None = None,
        folds: dict | None = None,
        label_fixes: str | None = None,
    ) -> None:
        self.allow_outside_root = bool(allow_outside_root)
        self.views = check_view_names(views, f"{type(self).__name__}.views") if views else None
        if max_instances is not None and (not isinstance(max_instances, int) or max_instances < 1):
            raise DataError(f"{type(self).__name__}.max_instances: expected an integer >= 1 or null, got {max_instances!r}")
        self.max_instances = max_instances
        if on_bad_image not in ("raise", "skip"):
            raise DataError(f"{type(self).__name__}.on_bad_image: expected 'raise' or 'skip', got '{on_bad_image}'")
        self.data_root = str(data_root)
        if isinstance(classes, (str, os.PathLike)):
            classes = self.resolve(classes)
        self.classes = read_class_list(classes, where=f"{type(self).__name__}.classes") if classes is not None else None
        self.annotation_errors: list[str] | None = [] if collect_errors else None
        index = self.load_annotations()
        if self.classes is None:
            raise DataError(f"{type(self).__name__}: no class list given and the annotation file has none")
        self.label_index = index.build() if isinstance(index, LabelIndexBuilder) else index
        where = type(self).__name__
        fixes_file = check_fixes_key(label_fixes, where)
        # read against every sample of the file, applied after the hold-out / fold is cut: the parts
        # are cut on the file's labels, so fixes never move a sample from one part to another
        fixes = read_label_fixes(self.resolve(fixes_file), self.label_index.paths, self.classes, self.data_root) if fixes_file else None
        rows = np.arange(len(self.label_index))
        self.holdout = check_holdout(holdout, where)
        if self.holdout is not None:
            rows = rows[holdout_rows(self.label_index, len(self.classes), **self.holdout)]
            self.label_index = self.label_index.take(rows)
        self.folds = check_folds(folds, where)
        if self.folds is not None:
            kept = fold_rows(self.label_index, len(self.classes), **self.folds)
            rows, self.label_index = rows[kept], self.label_index.take(kept)
        #: the labels as the annotation file gives them, before any fix: what hold-outs and folds are cut on
        self.split_index = self.label_index
        #: the label fixes applied (see :meth:`LabelFixes.record`; None without label_fixes)
        self.label_fixes = self._apply_fixes(fixes, rows) if fixes is not None else None
        if len(self.label_index.paths) == 0 and not self.annotation_errors:
            raise DataError(
                f"{getattr(self, 'ann_file', None) or self.data_root or type(self).__name__}: lists no samples (only a header?)"
            )
        self._check_inside_root()
        self._setup_loading(pipeline, on_bad_image)
        self.bags = self.views is not None or (len(self) > 0 and is_bag_path(self.image_path(0)))
        if check_files:
            self._check_files()
        if cache and self.bags:
            raise DataError(f"{type(self).__name__}: cache: true is for datasets of single images, not of bags of images (volumes)")
        if cache:
            self._cache = ImageCache.build(self)

    def resolve(self, path: str | os.PathLike) -> str:
        """A relative annotation/class-list path is relative to ``data_root`` (mmcls convention)."""
        return str(path) if os.path.isabs(path) else os.path.join(self.data_root, str(path))

    @classmethod
    def from_index(cls, index: LabelIndex, classes: Sequence[str], data_root: str = "", pipeline=None) -> "MultiLabelDataset":
        """A dataset straight from a label index (shards' ``labels.npz``, a subset, a benchmark)."""
        self = cls.__new__(cls)
        Dataset.__init__(self)
        self.data_root = str(data_root)
        self.classes = read_class_list(classes)
        self.label_index = index
        self._setup_loading(pipeline, "raise")
        return self

    # the label index's CSR arrays, as the statistics and samplers read them
    @property
    def offsets(self) -> np.ndarray:
        return self.label_index.offsets

    @property
    def label_ids(self) -> np.ndarray:
        return self.label_index.ids

    @property
    def label_vals(self) -> np.ndarray:
        return self.label_index.vals

    def take_batch_normalize(self) -> Callable | None:
        """Hand the pipeline's final ``ToFloatNormalize`` over to the loader and return it (None when the
        pipeline does not end with one, or samples are bags).

        Samples then stay uint8 [3, H, W]: a quarter of the bytes to move from worker processes and
        to the device, and the batch is normalised once where it is used (on the GPU there). The
        same arithmetic runs per element either way, so the numbers are identical.
        """
        if self.bags:
            return None
        pipeline, normalize = split_final_normalize(self.pipeline)
        if normalize is None:
            return None
        if self.post_cache_pipeline is self.pipeline:
            self.pipeline = self.post_cache_pipeline = pipeline
            return normalize
        post, post_normalize = split_final_normalize(self.post_cache_pipeline)
        if post_normalize is None:
            return None
        self.pipeline, self.post_cache_pipeline = pipeline, post
        return normalize

    def take_device_decode(self) -> DeviceDecode:
        """Hand decoding, the pipeline and the normalisation over to the device (``decode_on_device``):
        samples become the files' undecoded JPEG bytes, and the returned :class:`DeviceDecode` makes
        the batch where the model runs.

        Raises:
            DataError: the samples are bags or views, or the images are cached (already decoded).
        """
        if self.bags:
            raise DataError(f"{type(self).__name__}: decode_on_device is for datasets of single images, not of bags of images")
        if self._cache is not None:
            raise DataError(f"{type(self).__name__}: decode_on_device and cache: true exclude each other (the cache holds decoded images)")
        pipeline, normalize = split_final_normalize(self.pipeline)
        self._encoded = True
        return DeviceDecode(pipeline, normalize)

    def _setup_loading(self, pipeline, on_bad_image: str) -> None:
        self.pipeline = pipeline if callable(pipeline) else build_pipeline(pipeline or [])
        # what a cache may store: the output of a leading Resize (deterministic), else the decoded image
        steps = [] if callable(pipeline) else list(pipeline or [])
        if steps and steps[0].get("type") == "Resize":
            self.cache_transform, self.post_cache_pipeline = build_transform(steps[0]), build_pipeline(steps[1:])
        else:
            self.cache_transform, self.post_cache_pipeline = None, self.pipeline
        self._cache = None
        self._encoded = False  # decode_on_device: samples are the files' bytes (take_device_decode)
        self.on_bad_image = on_bad_image
        # one flag per image in shared memory: DataLoader workers mark, the main process counts
        self._bad = torch.zeros(len(self.label_index.paths), dtype=torch.int8).share_memory_() if on_bad_image == "skip" else None

    @property
    def num_bad_images(self) -> int:
        """Distinct unreadable images met so far (``on_bad_image: skip``), over all workers."""
        return int(self._bad.sum()) if self._bad is not None else 0

    def bad_annotation(self, error: DataError) -> None:
        """Raise ``error``; with ``collect_errors``, record it instead (the reader skips the entry)."""
        if self.annotation_errors is None:
            raise error
        self.annotation_errors.append(str(error))

    # -- to be provided by subclasses -------------------------------------------------------------
    #: the value of every (image, class) entry the index does not store: 0 negative, -1 unknown
    unlisted: int = 0

    def load_annotations(self) -> LabelIndexBuilder | LabelIndex:
        raise NotImplementedError

    def source(self, idx: int) -> str:
        """Where sample ``idx`` was declared (``file:line``), for error messages."""
        return f"{getattr(self, 'ann_file', type(self).__name__)}:{int(self.label_index.lines[idx])}"

    # -- accessors --------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.label_index.paths)

    def image_path(self, idx: int) -> str:
        """The file of sample ``idx`` (a bag: its volume, folder, ``a|b`` list or ``{view}`` template)."""
        rel = self.label_index.paths[idx].decode("utf-8")
        if LIST_SEPARATOR in rel:
            return LIST_SEPARATOR.join(os.path.join(self.data_root, p) for p in rel.split(LIST_SEPARATOR))
        return os.path.join(self.data_root, rel)

    def view_paths(self, idx: int) -> dict[str, str]:
        """``{view: path}`` of sample ``idx`` (``{"": path}`` without views)."""
        path = self.image_path(idx)
        return {v: path.replace("{view}", v) for v in self.views} if self.views else {"": path}

    def get_target(self, idx: int) -> torch.Tensor:
        """Target [C] (float32): 1 positive, 0 negative, -1 ignored (unlisted classes: :attr:`unlisted`)."""
        s, e = self.offsets[idx], self.offsets[idx + 1]
        t = np.full(self.num_classes, self.unlisted, dtype=np.float32)
        t[self.label_ids[s:e]] = self.label_vals[s:e]
        return torch.from_numpy(t)

    def dense_targets(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """Targets of the given images as a dense int8 [len(rows), C] block (a batch, not a whole large set)."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.full((len(rows), self.num_classes), self.unlisted, dtype=np.int8)
        starts, ends = self.offsets[rows], self.offsets[rows + 1]
        lengths = ends - starts
        entry = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(int(lengths.sum()))
        out[np.repeat(np.arange(len(rows)), lengths), self.label_ids[entry]] = self.label_vals[entry]
        return out

    def class_counts(self) -> np.ndarray:
        """Number of images where each class is positive, int64 [C] (computed from the CSR arrays)."""
        pos = self.label_vals == 1
        return np.bincount(self.label_ids[pos], minlength=self.num_classes).astype(np.int64)

    def verified_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """(positives, negatives) per class, int64 [C] each, never counting unknown entries.

        With ``unlisted = 0`` every entry not stored is a negative (``N - pos - ignored``); with
        ``unlisted = -1`` only the stored, verified negatives count.
        """
        c = self.num_classes
        # one pass: (class, value) pairs counted together, value -1/0/1 -> column 0/1/2
        key = self.label_ids * np.int32(3) + (self.label_vals + np.int8(1)).astype(np.int32)
        counts = np.bincount(key, minlength=3 * c).reshape(c, 3).astype(np.int64)
        ignored, verified_neg, pos = counts[:, 0], counts[:, 1], counts[:, 2]
        if self.unlisted == 0:
            return pos, len(self) - pos - ignored
        return pos, verified_neg

    def class_frequency(self) -> np.ndarray:
        """Fraction of the images where each class is positive, float64 [C]; with unknown entries
        (``unlisted = -1``) the fraction among the images where the class was verified."""
        pos, neg = self.verified_counts()
        denom = np.full(self.num_classes, max(len(self), 1), dtype=np.float64) if self.unlisted == 0 else np.maximum(pos + neg, 1)
        return pos / denom

    def label_rows(self) -> np.ndarray:
        """Image index of every stored label entry (parallel to ``label_ids``), int64 [nnz]."""
        return np.repeat(np.arange(len(self), dtype=np.int64), np.diff(self.offsets))

    def label_stats(self) -> dict:
        """Per-class counts the losses' ``auto`` weights need (plain lists, storable in checkpoints).

        Returns:
            ``{"num_samples": N, "pos": [C], "neg": [C], "combinations": [[ids], count] ...}``;
            ``neg`` counts verified negatives only (see :meth:`verified_counts`); ``combinations`` lists each distinct set of
            positive classes with its number of images, most frequent first (computed on first access).
        """
        pos, neg = self.verified_counts()
        if self.unlisted != 0:
            logger.info(
                "%s: labels not listed for an image are unknown; counts and 'auto' weights use verified labels only", type(self).__name__
            )
        return LabelStats(self.label_combinations, num_samples=len(self), pos=pos.tolist(), neg=neg.tolist(), classes=list(self.classes))

    def label_combinations(self) -> list[list]:
        """Distinct sets of positive classes with their image counts: ``[[ids], count]``, most frequent first."""
        keep = self.label_vals == 1
        ids = self.label_ids[keep]
        counts = segment_reduce(np.add, keep.astype(np.int64), self.offsets)
        bounds = np.cumsum(counts)[:-1]
        combos = Counter(tuple(sorted(a.tolist())) for a in np.split(ids, bounds))
        return [[list(k), v] for k, v in sorted(combos.items(), key=lambda kv: (-kv[1], kv[0]))]

    def _apply_fixes(self, fixes: LabelFixes, rows: np.ndarray) -> dict:
        """Apply ``fixes`` (rows of the annotation file) to this dataset's samples, which are the
        file's ``rows`` in order; fixes of samples in another part of the data are left out."""
        position = {int(r): i for i, r in enumerate(rows.tolist())}
        dense: dict[int, np.ndarray] = {}
        applied = 0
        for r, entries in fixes.by_row.items():
            i = position.get(r)
            if i is None:
                continue
            dense[i] = self.get_target(i).numpy().astype(np.int8)
            for c, v in entries:
                dense[i][c] = v
            applied += len(entries)
        changed = sum(int((dense[i] != self.get_target(i).numpy().astype(np.int8)).sum()) for i in dense)
        self._replace_labels(dense)
        logger.info("label_fixes: %d fixes from %s, %d of them for these %d samples, %d labels changed", len(fixes.entries), fixes.file,
                    applied, len(rows), changed)  # fmt: skip
        return fixes.record(changed=changed, applied=applied)

    def _replace_labels(self, dense: dict[int, np.ndarray]) -> None:
        """Rebuild the label index with the rows of ``dense`` (full [C] int8 targets) replaced."""
        if not dense:
            return
        idx = self.label_index
        ids, vals, offsets = [], [], [0]
        for r in range(len(idx)):
            if r in dense:
                t = dense[r]
                keep = np.flatnonzero(t != self.unlisted)
                ids.append(keep.astype(np.int32))
                vals.append(t[keep].astype(np.int8))
            else:
                s, e = idx.offsets[r], idx.offsets[r + 1]
                ids.append(idx.ids[s:e])
                vals.append(idx.vals[s:e])
            offsets.append(offsets[-1] + len(ids[-1]))
        self.label_index = LabelIndex(idx.paths, np.asarray(offsets), np.concatenate(ids), np.concatenate(vals), idx.lines)

    def _check_inside_root(self) -> None:
        """A relative path that climbs out of ``data_root`` (``../../etc/passwd``) is an error: an
        annotation file should not reach files its data root does not hold (absolute paths are
        the explicit way to list images elsewhere)."""
        if not self.data_root or self.label_index.paths.dtype.kind != "S":
            return
        root = os.path.abspath(self.data_root)
        for i in np.flatnonzero(np.char.find(self.label_index.paths, b"..") >= 0):
            rel = self.label_index.paths[i].decode("utf-8", "replace")
            if os.path.isabs(rel):
                continue
            full = os.path.normpath(os.path.join(root, rel))
            if os.path.commonpath([root, full]) != root:
                raise DataError(
                    f"{self.source(int(i))}: '{rel}' points outside data_root ({self.data_root}); list it with an absolute "
                    "path, or choose a data_root that contains it"
                )

    def outside_root(self, path: str) -> str | None:
        """Where ``path`` really leads when a symbolic link takes it out of ``data_root`` (else None).

        One ``lstat`` per file: the real path of each folder is computed once and kept, so a
        million files in a few folders cost a million ``lstat`` calls, not a million ``realpath``.
        """
        if self.allow_outside_root or not self.data_root or LIST_SEPARATOR in path:
            return None
        cache = self.__dict__.setdefault("_real_dirs", {})  # per dataset (and per worker process)
        root = cache.get("") or cache.setdefault("", os.path.realpath(self.data_root))
        folder = os.path.dirname(path)
        real_dir = cache.get(folder) or cache.setdefault(folder, os.path.realpath(folder))
        full = os.path.realpath(path) if os.path.islink(path) else os.path.join(real_dir, os.path.basename(path))
        return None if full == root or full.startswith(root.rstrip(os.sep) + os.sep) else full

    def check_inside_root(self, idx: int, path: str) -> None:
        """Refuse a relative path of sample ``idx`` that a symbolic link leads outside ``data_root``."""
        target = self.outside_root(path) if not os.path.isabs(self.label_index.paths[idx].decode("utf-8", "replace")) else None
        if target is not None:
            raise DataError(
                f"{path} (listed at {self.source(idx)}) is a symbolic link that leads outside data_root ({self.data_root}) to "
                f"{target}; list the file by its absolute path, or set allow_outside_root: true in this dataset's config"
            )

    def _check_files(self) -> None:
        missing = []  # (sample, the paths of it that do not exist)
        for i in range(len(self)):
            paths = self.view_paths(i).values()
            gone = [p for p in paths if not (bag_exists(p) if self.bags else os.path.isfile(p))]
            if gone:
                missing.append((i, gone))
            elif not self.allow_outside_root and self.data_root:
                for p in paths:
                    self.check_inside_root(i, p)
        if missing:
            shown = "; ".join(f"{', '.join(gone)} ({self.source(i)})" for i, gone in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise DataError(f"{len(missing)} {'sample' if self.bags else 'image file'}(s) not found: {shown}{more}")

    def read_image(self, idx: int) -> torch.Tensor | dict[str, torch.Tensor]:
        """The decoded uint8 image [3, H, W] of sample ``idx`` (a bag: [S, 3, H, W], or a dict of
        them per view); a clear :class:`DataError` if unreadable."""
        if self.bags:
            out = {
                v: self._read(idx, p, load_bag if is_bag_path(p) else lambda q: load_image(q)[None])
                for v, p in self.view_paths(idx).items()
            }
            return out if self.views else out[""]
        return self._read(idx, self.image_path(idx), load_image)

    def _read(self, idx: int, path: str, reader: Callable) -> torch.Tensor:
        if self.bags:  # a bag is read whole: one more lstat is nothing (images are checked at start-up)
            self.check_inside_root(idx, path)
        try:
            return reader(path)
        except FileNotFoundError:
            raise DataError(f"image file not found: {path} (listed at {self.source(idx)})") from None
        except Exception as e:  # noqa: BLE001 - any decoder failure is a bad image
            raise DataError(f"cannot decode image {path} (listed at {self.source(idx)}): {e}") from None

    def __getitems__(self, indices) -> list:
        """A batch of samples; random augmentations seeded per batch when the batch carries a seed
        (:class:`SeededBatchSampler`), so results do not depend on the number of workers."""
        if self._encoded:  # decoded and augmented on the device (DeviceDecode), from the batch's seed
            seed = getattr(indices, "seed", None)
            return [(replace(s[0], seed=seed), *s[1:]) for s in map(self.__getitem__, indices)]
        samples = fetch_seeded(self.__getitem__, indices)
        check_same_size(self, list(indices), samples)
        return samples

    #: evaluation loaders set this: samples then come as ``(image, target, index)``
    return_index = False

    def __getitem__(self, idx: int) -> tuple:
        """``(image, target [C])``: the pipeline's output and 1 / 0 / -1 per class.

        With :attr:`return_index`, ``(image, target, index)``: the index of the sample actually
        returned (with ``on_bad_image: skip`` it may be a substitute), so evaluation attributes
        every score row to its own image.
        """
        n = len(self)
        for _ in range(n):
            if self._bad is not None and self._bad[idx]:
                idx = (idx + 1) % n  # known bad: substitute the next sample without retrying
                continue
            try:
                if self._cache is not None:
                    image = self.post_cache_pipeline(self._cache.get(idx))
                elif self._encoded:
                    path = self.image_path(idx)
                    image = EncodedImage(*self._read(idx, path, read_jpeg), path=path, seed=None)
                elif self.bags:  # each view its own random draw; one draw for all slices of a view
                    raw = self.read_image(idx)
                    image = (
                        {v: self.pipeline(subsample(b, self.max_instances, self.training)) for v, b in raw.items()}
                        if self.views
                        else self.pipeline(subsample(raw, self.max_instances, self.training))
                    )
                else:
                    image = self.pipeline(self.read_image(idx))
                return (image, self.get_target(idx), idx) if self.return_index else (image, self.get_target(idx))
            except DataError as e:
                if self._bad is None:
                    raise DataError(
                        f"{e}. To go on without such images set 'on_bad_image: skip' in this dataset's config; "
                        "'python tools/check_dataset.py CONFIG' lists every unreadable image at once"
                    ) from None
                self._bad[idx] = 1
                logger.warning("on_bad_image=skip: %s", e)
                idx = (idx + 1) % n
        raise DataError(f"{type(self).__name__}: no readable image among its {n} samples")


def _is_seed(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= SEED_MAX


def check_holdout(holdout: dict | None, where: str) -> dict | None:
    """``holdout`` with its defaults filled (``fraction`` 0.15, ``seed`` 0), or one clear error."""
    if holdout is None:
        return None
    if not isinstance(holdout, dict) or set(holdout) - {"fraction", "part", "seed"}:
        raise DataError(f"{where}.holdout: expected {{fraction: 0.15, part: train|val, seed: 0}}, got {holdout!r}")
    out = {"fraction": holdout.get("fraction", 0.15), "part": holdout.get("part"), "seed": holdout.get("seed", 0)}
    if out["part"] not in ("train", "val"):
        raise DataError(
            f"{where}.holdout.part: expected 'train' (the samples kept for training) or 'val' (the held-out ones), got {out['part']!r}"
        )
    f = out["fraction"]
    if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f < 1:
        raise DataError(f"{where}.holdout.fraction: expected a number in (0, 1), got {f!r}")
    if not _is_seed(out["seed"]):
        raise DataError(f"{where}.holdout.seed: expected an integer from 0 to 2^32 - 1, got {out['seed']!r}")
    return out


def _stratification_labels(index: LabelIndex, num_classes: int) -> np.ndarray:
    """The [N, C] positives that hold-outs and folds stratify on (unknown entries count as not
    positive); one class (one model per task) gets its complement beside it, so that it is a label
    matrix iterative stratification takes."""
    y = index.positives(num_classes)
    return np.concatenate([y, 1 - y], axis=1) if y.shape[1] == 1 else y


def holdout_rows(index: LabelIndex, num_classes: int, fraction: float, part: str, seed: int) -> np.ndarray:
    """The rows of ``index`` in the ``part`` (``train`` or ``val``) of a seeded, multi-label
    stratified hold-out of ``fraction`` of the samples (iterative stratification: each class's
    positives split in about the same proportion; unknown entries count as not positive).
    The same arguments give the same rows on every machine, in sorted order."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    n = len(index)
    if round(n * fraction) < 1 or round(n * (1 - fraction)) < 1:
        raise DataError(f"holdout: {fraction:g} of {n} samples leaves one part empty")
    y = _stratification_labels(index, num_classes)
    split = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    keep, held = next(split.split(np.zeros(n), y))
    return np.sort(held if part == "val" else keep)


def check_folds(folds: dict | None, where: str) -> dict | None:
    """``folds`` checked, or one clear error."""
    if folds is None:
        return None
    keys = {"k", "seed", "fold", "part"}
    if not isinstance(folds, dict) or set(folds) - keys or not {"k", "fold", "part"} <= set(folds):
        raise DataError(f"{where}.folds: expected {{k: 5, seed: 0, fold: 0..k-1, part: train|held}}, got {folds!r}")
    k, fold, seed = folds["k"], folds["fold"], folds.get("seed", 0)
    if not _is_seed(seed):
        raise DataError(f"{where}.folds.seed: expected an integer from 0 to 2^32 - 1, got {seed!r}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise DataError(f"{where}.folds.k: expected an integer >= 2, got {k!r}")
    if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < k:
        raise DataError(f"{where}.folds.fold: expected an integer in 0..{k - 1}, got {fold!r}")
    if folds["part"] not in ("train", "held"):
        raise DataError(f"{where}.folds.part: expected 'train' (the other folds) or 'held' (this fold), got {folds['part']!r}")
    return {"k": k, "seed": int(seed), "fold": fold, "part": folds["part"]}


def fold_assignment(index: LabelIndex, num_classes: int, k: int, seed: int) -> np.ndarray:
    """The fold (0..k-1) of every sample of ``index``: seeded, multi-label stratified K folds
    (iterative stratification, Sechidis et al. 2011: each class's positives spread evenly), int64 [N]."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    n = len(index)
    if n < k:
        raise DataError(f"folds: {k} folds need at least {k} samples, the dataset has {n}")
    y = _stratification_labels(index, num_classes)
    out = np.empty(n, dtype=np.int64)
    for fold, (_, held) in enumerate(MultilabelStratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(n), y)):
        out[held] = fold
    return out


def fold_rows(index: LabelIndex, num_classes: int, k: int, seed: int, fold: int, part: str) -> np.ndarray:
    """The rows of ``index`` in ``part`` (``train``: every other fold; ``held``: this one) of :func:`fold_assignment`."""
    assigned = fold_assignment(index, num_classes, k, seed)
    return np.flatnonzero(assigned == fold if part == "held" else assigned != fold)


def check_same_size(dataset, indices: list, samples: list) -> None:
    """The images of a batch agree in size (a bag's instances: each bag's first), else one clear error."""
    if getattr(dataset, "bags", False):  # bags differ in length: their instances must agree in size
        samples = [(next(iter(s[0].values())) if isinstance(s[0], dict) else s[0])[0] for s in samples]
        samples = [(x,) for x in samples]
    tensors = [k for k, s in enumerate(samples) if isinstance(s[0], torch.Tensor)]
    check_batch_sizes([tuple(samples[k][0].shape) for k in tensors], lambda j: dataset.image_path(int(indices[tensors[j]])))


class IndexedDataset(Dataset):
    """Wraps any dataset whose samples are ``(image, target)`` so they come as ``(image, target, index)``.

    Evaluation needs each sample's dataset index to put score rows in dataset order (and to
    drop DistributedSampler padding); :class:`MultiLabelDataset` provides it itself
    (``return_index``), this wrapper does it for other datasets.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: int) -> tuple:
        image, target = self.dataset[idx][:2]
        return image, target, idx

    def __getattr__(self, name):  # classes, image_path, ... of the wrapped dataset
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)
