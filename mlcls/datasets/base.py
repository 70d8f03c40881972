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

import difflib
import logging
import os
import re
from array import array
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from mlcls.errors import DataError

logger = logging.getLogger("mlcls")

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
_TV_DECODABLE = (".jpg", ".jpeg", ".png", ".gif", ".webp")


def read_class_list(classes: Sequence[str] | str | os.PathLike, where: str = "classes") -> list[str]:
    """Class names from a list, or from a text file with one name per line (blank lines skipped)."""
    if isinstance(classes, (str, os.PathLike)):
        path = Path(classes)
        if not path.is_file():
            raise DataError(f"{where}: class list file not found: {path}")
        names = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        where = str(path)
    elif classes is None:
        names = []
    else:
        names = [str(c) for c in classes]
    if not names:
        raise DataError(f"{where}: the class list is empty; give at least one class name")
    dup = {n for n in names if names.count(n) > 1} if len(set(names)) != len(names) else set()
    if dup:
        raise DataError(f"{where}: duplicate class names: {sorted(dup)}")
    return names


def check_space_free(classes: Sequence[str], where: str) -> None:
    """Class names of a list format whose labels are separated by whitespace cannot contain any."""
    spaced = [c for c in classes if any(ch.isspace() for ch in c)]
    if spaced:
        raise DataError(
            f"{where}: class name {spaced[0]!r} contains a space, but this format separates labels by spaces, so it could "
            f"never be named in a row; rename it (e.g. {'_'.join(spaced[0].split())!r})"
            + (f" and {len(spaced) - 1} more like it" if len(spaced) > 1 else "")
        )


def unknown_class_error(name: str, classes: Sequence[str], where: str) -> DataError:
    parts = [p for p in re.split(r"[,;|]", name) if p]
    if len(parts) > 1 and all(p.strip() in classes for p in parts):  # 'circle,square' (a quoted CSV field)
        return DataError(f"{where}: unknown class '{name}': labels are separated by spaces, write '{' '.join(p.strip() for p in parts)}'")
    close = difflib.get_close_matches(name, classes, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    shown = ", ".join(classes[:20]) + (", ..." if len(classes) > 20 else "")
    return DataError(f"{where}: unknown class '{name}'{hint} (classes: {shown})")


import torchvision.io as _tv_io  # noqa: E402 - imported once, not per decoded image

from mlcls.datasets import bags as _bags  # noqa: E402


def max_image_pixels() -> int | None:
    """The largest image (width x height) mlcls decodes: ``MLCLS_MAX_IMAGE_PIXELS`` when set (``0``:
    no limit), else Pillow's ``Image.MAX_IMAGE_PIXELS`` (about 89.5 Mpx; ``None`` there: no limit).

    The variable reaches DataLoader workers however they are started; see
    :func:`set_max_image_pixels` and the ``max_image_pixels`` config key.
    """
    env = os.environ.get("MLCLS_MAX_IMAGE_PIXELS")
    if env:
        try:
            value = int(float(env))
        except ValueError:
            raise DataError(f"MLCLS_MAX_IMAGE_PIXELS: expected a number of pixels, got '{env}'") from None
        return value if value > 0 else None
    from PIL import Image

    return Image.MAX_IMAGE_PIXELS


def set_max_image_pixels(limit: int | None) -> None:
    """Set the pixel limit of :func:`max_image_pixels` for this process and the ones it starts."""
    from PIL import Image

    os.environ["MLCLS_MAX_IMAGE_PIXELS"] = str(int(limit or 0))
    Image.MAX_IMAGE_PIXELS = int(limit) if limit else None  # Pillow's own check must not refuse below ours


def _check_pixels(width: int, height: int, name: str) -> None:
    limit = max_image_pixels()
    if limit is not None and width * height > limit:
        raise DataError(
            f"{name}: {width}x{height} pixels ({width * height / 1e6:.1f} Mpx) is above the limit of {limit / 1e6:.1f} Mpx, "
            "refused before decoding (a decompression bomb, or a scan this large?); raise the limit with the config key "
            "max_image_pixels or MLCLS_MAX_IMAGE_PIXELS if you meant it"
        )


def open_image(source, name: str):
    """``PIL.Image.open`` (header only, nothing decoded yet) with the pixel limit checked: the one
    place where mlcls opens an image file, whatever decodes it afterwards.

    Raises:
        DataError: the image is above :func:`max_image_pixels`, or Pillow cannot identify it.
    """
    import io
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        if isinstance(source, io.BytesIO):
            head = bytes(source.getbuffer()[:65536])
        else:
            with open(source, "rb") as f:
                head = f.read(65536)
        size = _png_size(head, any_mode=True) or _jpeg_size(head)
        if size is not None:  # before Pillow's own check, which says less (and only above twice its limit)
            _check_pixels(*size, name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides, with a clearer line
            img = Image.open(source)
    except Image.DecompressionBombError as e:  # above twice Pillow's limit: its check runs inside open()
        size = re.search(r"\((\d+) pixels\)", str(e))
        raise DataError(f"{name}: {size.group(1) if size else 'too many'} pixels, above the limit; refused before decoding") from None
    except UnidentifiedImageError:
        raise DataError(f"{name}: not an image file that Pillow or torchvision can read") from None
    except FileNotFoundError:
        raise
    except OSError as e:  # a header cut short, an unreadable file
        raise DataError(f"{name}: cannot read the image header ({e})") from None
    _check_pixels(*img.size, name)
    return img


def load_image(path: str) -> torch.Tensor:
    """Decode an image file to a uint8 RGB tensor [3, H, W] (EXIF orientation applied).

    JPEG/PNG/GIF/WEBP go through ``torchvision.io.decode_image`` (libjpeg-turbo/libpng); other
    formats, images with transparency (composited over black) and files it cannot read go
    through Pillow, so a file decodes exactly as its PIL image does (:func:`pil_to_uint8`).
    16-bit images are scaled to 8 bits; an animated GIF gives its first frame, as in Pillow.
    The size in the header is checked against :func:`max_image_pixels` before decoding.
    """
    if os.path.isdir(path):
        raise DataError(f"{path} is a folder, not an image file")
    if path.lower().endswith(_TV_DECODABLE):
        try:
            data = _tv_io.read_file(path)
        except RuntimeError:  # missing or unreadable: Pillow raises the usual OSError for it
            data = None
        if data is not None:
            return _decode_bytes(data, path)
    with open_image(path, path) as img:
        return pil_to_uint8(img)


def load_image_bytes(data: bytes, name: str) -> torch.Tensor:
    """Decode image file bytes (from a shard, say) to uint8 RGB [3, H, W], as :func:`load_image` does."""
    return _decode_bytes(torch.frombuffer(bytearray(data), dtype=torch.uint8), name)


def _decode_bytes(data: torch.Tensor, name: str) -> torch.Tensor:
    """Encoded bytes (uint8 [n]) -> uint8 RGB [3, H, W]: the header's size checked first, then
    torchvision's decoder where it gives the same pixels as Pillow, else Pillow."""
    head = data[:65536].numpy().tobytes()
    size = _png_size(head) or _jpeg_size(head)  # a few microseconds, where opening with Pillow costs ~40
    if size is not None:
        _check_pixels(*size, name)
        decoded = _decode_with_torchvision(data)
        if decoded is not None:
            return decoded
    import io

    with open_image(io.BytesIO(data.numpy().tobytes()), name) as img:
        try:
            return pil_to_uint8(img)
        except OSError as e:  # truncated or corrupt data
            raise DataError(f"{name}: cannot decode the image ({e})") from None


def _png_size(head: bytes, any_mode: bool = False) -> tuple[int, int] | None:
    """(width, height) of a PNG; unless ``any_mode``, only of one that torchvision decodes as
    Pillow does (grey or RGB, no alpha or palette: those are composited by :func:`pil_to_uint8`)."""
    if len(head) >= 26 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and (any_mode or head[25] in (0, 2)):
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    return None


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's start-of-frame marker (within the first 64 kB), else None."""
    if head[:2] != b"\xff\xd8":
        return None
    i, n = 2, len(head)
    while i + 9 < n:
        if head[i] != 0xFF:
            return None
        marker = head[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker in _SOF:
            return int.from_bytes(head[i + 7 : i + 9], "big"), int.from_bytes(head[i + 5 : i + 7], "big")
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
        else:
            i += 2 + int.from_bytes(head[i + 2 : i + 4], "big")
    return None


def _decode_with_torchvision(data: torch.Tensor) -> torch.Tensor | None:
    """Encoded bytes (uint8 [n]) -> uint8 RGB [3, H, W]; None where torchvision cannot decode
    them (e.g. a CMYK JPEG or an odd PNG: Pillow tries next)."""
    try:
        img = _tv_io.decode_image(data, mode=_tv_io.ImageReadMode.RGB, apply_exif_orientation=True)
    except RuntimeError:
        return None
    if img.dim() == 4:  # an animated GIF: its frames [N, 3, H, W]; the first is the image (as Pillow shows it)
        img = img[0]
    return img if img.dtype == torch.uint8 else _to_uint8(img)


def _to_uint8(img: torch.Tensor) -> torch.Tensor:
    """An integer image of more than 8 bits (e.g. a 16-bit PNG) as uint8, scaled as torchvision scales."""
    from torchvision.transforms.v2.functional import to_dtype

    if img.dtype == torch.uint16:  # not every torch op supports uint16: go through int32
        img = img.to(torch.int32)
        return (img >> 8).to(torch.uint8)
    return to_dtype(img, torch.uint8, scale=True)


def pil_to_uint8(img) -> torch.Tensor:
    """A PIL image as uint8 RGB [3, H, W], decoded exactly as :func:`load_image` decodes a file:
    EXIF orientation, transparency over black, 16/32-bit greyscale scaled (not clipped) to 8 bits."""
    from PIL import ImageOps

    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)  # an animated image: its first frame
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img).astype(np.int64)
        if img.mode == "I" and arr.max(initial=0) > 65535:
            arr = arr >> 16  # 32-bit data
        g = torch.from_numpy((arr >> 8).clip(0, 255).astype(np.uint8))
        return g.unsqueeze(0).expand(3, -1, -1).contiguous()
    if img.mode == "F":  # float greyscale, read as 0..255 (what Pillow's own conversion assumes)
        g = torch.from_numpy(np.clip(np.asarray(img, dtype=np.float32), 0, 255).round().astype(np.uint8))
        return g.unsqueeze(0).expand(3, -1, -1).contiguous()
    if img.mode in ("RGBA", "LA", "P", "PA"):
        from PIL import Image

        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(bg, img)
    arr = np.asarray(img.convert("RGB"))
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def encode_paths(paths: Sequence[str]) -> np.ndarray:
    """Paths as one fixed-width UTF-8 byte array: 1 byte per ASCII character instead of numpy's
    4 (``str_``) or a Python object per path (~75 bytes of overhead each)."""
    return np.array([str(p).encode("utf-8") for p in paths], dtype=np.bytes_)


class LabelStats(dict):
    """``label_stats()`` result; ``combinations`` is computed on first access only (a pass over
    every image that only the label-powerset head needs)."""

    def __init__(self, dataset: "MultiLabelDataset", **counts) -> None:
        super().__init__(**counts)
        self._dataset = dataset

    def __missing__(self, key: str):
        if key != "combinations":
            raise KeyError(key)
        self[key] = self._dataset.label_combinations()
        return self[key]


def segment_reduce(ufunc: np.ufunc, values: np.ndarray, offsets: np.ndarray, empty: float | int = 0) -> np.ndarray:
    """``ufunc`` (``np.add``, ``np.maximum``) over each segment ``values[offsets[i]:offsets[i+1]]``,
    [len(offsets) - 1]; an empty segment gets ``empty`` (``reduceat`` alone would repeat the
    next element for it). One pass, no per-entry segment index."""
    out = np.full(len(offsets) - 1, empty, dtype=np.result_type(values, np.min_scalar_type(empty)))
    filled = np.diff(offsets) > 0
    if values.size:
        out[filled] = ufunc.reduceat(values, offsets[:-1][filled])
    return out


class CSRIndex:
    """A finished label index from a vectorised reader: paths as a bytes array [N], lines int32 [N],
    offsets int64 [N+1], ids int32 [nnz], vals int8 [nnz]."""

    def __init__(self, paths: np.ndarray, lines: np.ndarray, offsets: np.ndarray, ids: np.ndarray, vals: np.ndarray) -> None:
        self.paths, self.lines, self.offsets, self.ids, self.vals = paths, lines, offsets, ids, vals


class LabelIndexBuilder:
    """Collects per-image labels into CSR arrays while an annotation file is parsed."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.lines = array("i")
        self.offsets = array("q", [0])
        self.ids = array("i")
        self.vals = array("b")

    def add(self, path: str, positives: Sequence[int], line: int = 0, ignored: Sequence[int] = ()) -> None:
        self.paths.append(path)
        self.lines.append(line)
        self.ids.extend(positives)
        self.vals.extend([1] * len(positives))
        self.ids.extend(ignored)
        self.vals.extend([-1] * len(ignored))
        self.offsets.append(len(self.ids))

    def __len__(self) -> int:
        return len(self.paths)


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

    A dataset whose samples are bags (volumes, folders of images, ``a|b|c`` lists, or ``views``)
    has :attr:`bags` set; its samples are ``[S, 3, H, W]`` (or ``{view: ...}``) and its loaders
    pack them into a :class:`~mlcls.datasets.bags.BagBatch`.
    """

    #: samples are bags of images (set at start-up from ``views`` or the first path)
    bags = False
    #: training loaders draw a random subset of long bags; evaluation loaders set this to False
    training = True

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
    ) -> None:
        self.views = [str(v) for v in views] if views else None
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
        if isinstance(index, CSRIndex):
            self._paths, self._lines, self.offsets, self.label_ids, self.label_vals = (
                index.paths,
                index.lines,
                index.offsets,
                index.ids,
                index.vals,
            )
        else:
            self._paths = encode_paths(index.paths)
            self._lines = np.frombuffer(index.lines, dtype=np.int32).copy()
            self.offsets = np.frombuffer(index.offsets, dtype=np.int64).copy()
            self.label_ids = np.frombuffer(index.ids, dtype=np.int32).copy()
            self.label_vals = np.frombuffer(index.vals, dtype=np.int8).copy()
        if len(self._paths) == 0 and not self.annotation_errors:
            raise DataError(
                f"{getattr(self, 'ann_file', None) or self.data_root or type(self).__name__}: lists no samples (only a header?)"
            )
        self._check_inside_root()
        self._setup_loading(pipeline, on_bad_image)
        self.bags = self.views is not None or (len(self) > 0 and _bags.is_bag_path(self.image_path(0)))
        if check_files:
            self._check_files()
        if cache and self.bags:
            raise DataError(f"{type(self).__name__}: cache: true is for datasets of single images, not of bags of images (volumes)")
        if cache:
            from mlcls.datasets.cache import ImageCache

            self._cache = ImageCache.build(self)

    def resolve(self, path: str | os.PathLike) -> str:
        """A relative annotation/class-list path is relative to ``data_root`` (mmcls convention)."""
        return str(path) if os.path.isabs(path) else os.path.join(self.data_root, str(path))

    @classmethod
    def from_csr(
        cls, paths, offsets, label_ids, label_vals, classes: Sequence[str], data_root: str = "", pipeline=None
    ) -> "MultiLabelDataset":
        """A dataset straight from arrays (paths [N], offsets [N+1], label_ids/label_vals [nnz])."""

        self = cls.__new__(cls)
        Dataset.__init__(self)
        self.data_root = str(data_root)
        self.classes = read_class_list(classes)
        is_bytes = isinstance(paths, np.ndarray) and paths.dtype.kind == "S"
        self._paths = paths if is_bytes else encode_paths(paths)  # a bytes array is kept as it is
        self._lines = np.zeros(len(self._paths), dtype=np.int32)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.label_ids = np.asarray(label_ids, dtype=np.int32)
        self.label_vals = np.asarray(label_vals, dtype=np.int8)
        if len(self.offsets) != len(self._paths) + 1 or self.offsets[-1] != len(self.label_ids):
            raise DataError("from_csr: offsets must have N+1 entries ending at len(label_ids)")
        self._setup_loading(pipeline, "raise")
        return self

    def _setup_loading(self, pipeline, on_bad_image: str) -> None:
        from mlcls.datasets.transforms import build_pipeline, build_transform

        self.pipeline = pipeline if callable(pipeline) else build_pipeline(pipeline or [])
        # what a cache may store: the output of a leading Resize (deterministic), else the decoded image
        steps = [] if callable(pipeline) else list(pipeline or [])
        if steps and steps[0].get("type") == "Resize":
            self.cache_transform, self.post_cache_pipeline = build_transform(steps[0]), build_pipeline(steps[1:])
        else:
            self.cache_transform, self.post_cache_pipeline = None, self.pipeline
        self._cache = None
        self.on_bad_image = on_bad_image
        # one flag per image in shared memory: DataLoader workers mark, the main process counts
        self._bad = torch.zeros(len(self._paths), dtype=torch.int8).share_memory_() if on_bad_image == "skip" else None

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

    def load_annotations(self) -> LabelIndexBuilder | CSRIndex:
        raise NotImplementedError

    def source(self, idx: int) -> str:
        """Where sample ``idx`` was declared (``file:line``), for error messages."""
        return f"{getattr(self, 'ann_file', type(self).__name__)}:{int(self._lines[idx])}"

    # -- accessors --------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self._paths)

    def image_path(self, idx: int) -> str:
        """The file of sample ``idx`` (a bag: its volume, folder, ``a|b`` list or ``{view}`` template)."""
        rel = self._paths[idx].decode("utf-8")
        if _bags.LIST_SEPARATOR in rel:
            return _bags.LIST_SEPARATOR.join(os.path.join(self.data_root, p) for p in rel.split(_bags.LIST_SEPARATOR))
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
        return LabelStats(self, num_samples=len(self), pos=pos.tolist(), neg=neg.tolist(), classes=list(self.classes))

    def label_combinations(self) -> list[list]:
        """Distinct sets of positive classes with their image counts: ``[[ids], count]``, most frequent first."""
        from collections import Counter

        keep = self.label_vals == 1
        ids = self.label_ids[keep]
        counts = segment_reduce(np.add, keep.astype(np.int64), self.offsets)
        bounds = np.cumsum(counts)[:-1]
        combos = Counter(tuple(sorted(a.tolist())) for a in np.split(ids, bounds))
        return [[list(k), v] for k, v in sorted(combos.items(), key=lambda kv: (-kv[1], kv[0]))]

    def _check_inside_root(self) -> None:
        """A relative path that climbs out of ``data_root`` (``../../etc/passwd``) is an error: an
        annotation file should not reach files its data root does not hold (absolute paths are
        the explicit way to list images elsewhere)."""
        if not self.data_root or self._paths.dtype.kind != "S":
            return
        root = os.path.abspath(self.data_root)
        for i in np.flatnonzero(np.char.find(self._paths, b"..") >= 0):
            rel = self._paths[i].decode("utf-8", "replace")
            if os.path.isabs(rel):
                continue
            full = os.path.normpath(os.path.join(root, rel))
            if os.path.commonpath([root, full]) != root:
                raise DataError(
                    f"{self.source(int(i))}: '{rel}' points outside data_root ({self.data_root}); list it with an absolute "
                    "path, or choose a data_root that contains it"
                )

    def _check_files(self) -> None:
        if self.bags:
            missing = [i for i in range(len(self)) if not all(_bags.bag_exists(p) for p in self.view_paths(i).values())]
        else:
            missing = [i for i in range(len(self)) if not os.path.isfile(self.image_path(i))]
        if missing:
            shown = "; ".join(f"{self.image_path(i)} ({self.source(i)})" for i in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise DataError(f"{len(missing)} image file(s) not found: {shown}{more}")

    def read_image(self, idx: int) -> torch.Tensor | dict[str, torch.Tensor]:
        """The decoded uint8 image [3, H, W] of sample ``idx`` (a bag: [S, 3, H, W], or a dict of
        them per view); a clear :class:`DataError` if unreadable."""
        if self.bags:
            out = {
                v: self._read(idx, p, _bags.load_bag if _bags.is_bag_path(p) else lambda q: load_image(q)[None])
                for v, p in self.view_paths(idx).items()
            }
            return out if self.views else out[""]
        return self._read(idx, self.image_path(idx), load_image)

    def _read(self, idx: int, path: str, reader: Callable) -> torch.Tensor:
        try:
            return reader(path)
        except FileNotFoundError:
            raise DataError(f"image file not found: {path} (listed at {self.source(idx)})") from None
        except Exception as e:  # noqa: BLE001 - any decoder failure is a bad image
            raise DataError(f"cannot decode image {path} (listed at {self.source(idx)}): {e}") from None

    def __getitems__(self, indices) -> list:
        """A batch of samples; random augmentations seeded per batch when the batch carries a seed
        (:class:`SeededBatchSampler`), so results do not depend on the number of workers."""
        from mlcls.datasets.samplers import fetch_seeded

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
                elif self.bags:  # each view its own random draw; one draw for all slices of a view
                    raw = self.read_image(idx)
                    image = (
                        {v: self.pipeline(_bags.subsample(b, self.max_instances, self.training)) for v, b in raw.items()}
                        if self.views
                        else self.pipeline(_bags.subsample(raw, self.max_instances, self.training))
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


def check_same_size(dataset, indices: list, samples: list) -> None:
    """A batch is one tensor: images of different sizes (no Resize/crop in the pipeline) are an
    error naming both sizes and a file of each, instead of torch.stack's bare RuntimeError."""
    if getattr(dataset, "bags", False):  # bags differ in length: their instances must agree in size
        samples = [(next(iter(s[0].values())) if isinstance(s[0], dict) else s[0])[0] for s in samples]
        samples = [(x,) for x in samples]
    shapes = [tuple(s[0].shape) for s in samples if isinstance(s[0], torch.Tensor)]
    if len(set(shapes)) <= 1:
        return
    first = shapes[0]
    j = next(k for k, sh in enumerate(shapes) if sh != first)
    raise DataError(
        f"images of different sizes in one batch: {first[-2]}x{first[-1]} ({dataset.image_path(int(indices[0]))}) and "
        f"{shapes[j][-2]}x{shapes[j][-1]} ({dataset.image_path(int(indices[j]))}); add a Resize (e.g. "
        "{type: Resize, size: [224, 224]}) or a crop to the pipeline so every image has the same size"
    )


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
