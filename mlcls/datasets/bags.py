"""Samples made of many images ("bags"): MRI/CT series, multi-view exams, photo sets.

A bag is one sample's instances as one uint8 tensor ``[S, 3, H, W]`` (S varies from sample to
sample). It is read from

* a volume file: ``.npy`` / ``.npz`` holding ``(S, H, W)`` (grey) or ``(S, H, W, C)`` (C = 1 or 3);
  uint8 as it is, uint16 scaled to 8 bits by the rule ``volume_uint16`` (default ``range``:
  ``x * 255 / max``, which keeps 12-bit MRI; see :func:`uint16_to_uint8`), float taken as
  0..1 when its maximum is <= 1 and as 0..255 otherwise (values outside, NaN or infinite are an
  error, never clipped silently); the header is checked first against ``max_volume_slices``
  and ``max_volume_bytes`` (:func:`volume_settings`), so an oversized file is refused unread;
* a folder of images, in natural sort order (``slice2.png`` before ``slice10.png``);
* a list of image files in one annotation field, separated by ``|`` (``a.jpg|b.jpg|c.jpg``).

A sample with several views (``views: [sagittal, coronal, axial]``) holds one bag per view: its
path has a ``{view}`` placeholder (``exams/0001/{view}.npy``) and the sample is
``{view: [S_v, 3, H, W]}``. Transforms see a bag as one tensor, so torchvision's v2 transforms
draw one set of random parameters for all its slices (a volume is cropped and flipped as a
whole); each view draws its own.

A batch is a :class:`BagBatch`: all instances of all samples in one tensor per view plus the bag
sizes, with no padding.
"""

from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from mlcls.datasets.image_io import IMG_EXTENSIONS, check_pixels, check_regular_file, load_image
from mlcls.errors import DataError

VOLUME_EXTENSIONS = (".npy", ".npz")
LIST_SEPARATOR = "|"


def is_bag_path(path: str) -> bool:
    """True for a volume file, a list of files or a folder (what :func:`load_bag` reads)."""
    return path.lower().endswith(VOLUME_EXTENSIONS) or LIST_SEPARATOR in path or os.path.isdir(path)


def bag_exists(path: str) -> bool:
    if LIST_SEPARATOR in path:
        return all(os.path.isfile(p) for p in path.split(LIST_SEPARATOR))
    return os.path.isfile(path) or os.path.isdir(path)


VIEW_PLACEHOLDER = "{view}"
_VIEW_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def check_view_names(views, where: str) -> list[str] | None:
    """``views`` as a list of names, or one error naming ``where``: each view is a folder name in
    the sample paths and a key of the model's per-view modules, so letters, digits, ``_`` and ``-``
    only (``sag.ittal`` would be a submodule path), each once."""
    if views is None:
        return None
    if isinstance(views, str) or not isinstance(views, (list, tuple)) or not views:
        raise DataError(f"{where}: expected a list of view names such as [sagittal, coronal], got {views!r}")
    names = [str(v) for v in views]
    bad = [v for v in names if not _VIEW_NAME.match(v)]
    if bad:
        raise DataError(f"{where}: a view name is a folder name of letters, digits, '_' or '-', got {bad[0]!r}")
    if len(set(names)) != len(names):
        raise DataError(f"{where}: each view once, got {names}")
    return names


def view_files(path: str, views: list[str] | None) -> dict[str, str]:
    """``{view: file}`` of a sample path: the ``{view}`` placeholder filled with each of ``views``
    (a path without it: ``{"": path}``)."""
    if VIEW_PLACEHOLDER not in path or not views:
        return {"": path}
    return {v: path.replace(VIEW_PLACEHOLDER, v) for v in views}


def bag_input(path: str, views: list[str] | None) -> str | dict[str, str]:
    """A dataset's sample path as a model of exams takes it: ``{view: file}`` for named views, the
    path itself for one unnamed view (``[""]`` or None)."""
    views = [v for v in views or [] if v]
    return view_files(path, views) if views else path


def exam_name(path: str) -> str:
    """A multi-view sample's name: its path without the view (``valid/{view}/0003.npy`` ->
    ``valid/0003``, ``exams/0003/{view}.npy`` -> ``exams/0003``); other paths as they are."""
    if VIEW_PLACEHOLDER not in path:
        return path
    name = path.replace(os.sep + VIEW_PLACEHOLDER, "").replace("/" + VIEW_PLACEHOLDER, "").replace(VIEW_PLACEHOLDER, "")
    return name[: -len(ext)] if (ext := os.path.splitext(name)[1].lower()) in VOLUME_EXTENSIONS else name


def sample_unit(bags: bool, views: list[str] | None = None) -> str:
    """What tools count: ``img`` for single images, ``exam`` for samples of named views (an MRI
    exam's series), ``sample`` for other bags of images."""
    if not bags:
        return "img"
    return "exam" if views and any(views) else "sample"


def natural_key(name: str) -> list:
    """``slice2`` before ``slice10``: digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


#: what a volume may hold before mlcls reads it (checked from the file's header): the defaults
#: admit any MRI/CT series (MRNet: at most 51 slices of 256x256) and refuse a file that would need
#: gigabytes once expanded to RGB and float
DEFAULT_MAX_VOLUME_SLICES = 2048
DEFAULT_MAX_VOLUME_BYTES = 1 << 30
#: how uint16 volumes become 8 bits (see :func:`uint16_to_uint8`)
UINT16_RULES = ("range", "full", "12bit")


def volume_settings() -> dict:
    """The volume limits and uint16 rule in force: the config keys ``max_volume_slices``,
    ``max_volume_bytes`` (0: no limit) and ``volume_uint16``, handed to DataLoader workers through
    the variables ``MLCLS_MAX_VOLUME_SLICES``, ``MLCLS_MAX_VOLUME_BYTES``, ``MLCLS_VOLUME_UINT16``."""
    out = {}
    for key, env, default in (
        ("max_slices", "MLCLS_MAX_VOLUME_SLICES", DEFAULT_MAX_VOLUME_SLICES),
        ("max_bytes", "MLCLS_MAX_VOLUME_BYTES", DEFAULT_MAX_VOLUME_BYTES),
    ):
        text = os.environ.get(env)
        try:
            value = int(float(text)) if text else default
        except ValueError:
            raise DataError(f"{env}: expected a number, got '{text}'") from None
        out[key] = value if value > 0 else None
    rule = os.environ.get("MLCLS_VOLUME_UINT16") or "range"
    if rule not in UINT16_RULES:
        raise DataError(f"MLCLS_VOLUME_UINT16: expected one of {', '.join(UINT16_RULES)}, got '{rule}'")
    out["uint16"] = rule
    return out


def set_volume_settings(max_slices: int | None = None, max_bytes: int | None = None, uint16: str | None = None) -> None:
    """Set :func:`volume_settings` for this process and the ones it starts (None: leave as is)."""
    if max_slices is not None:
        os.environ["MLCLS_MAX_VOLUME_SLICES"] = str(int(max_slices))
    if max_bytes is not None:
        os.environ["MLCLS_MAX_VOLUME_BYTES"] = str(int(max_bytes))
    if uint16 is not None:
        if uint16 not in UINT16_RULES:
            raise DataError(f"volume_uint16: expected one of {', '.join(UINT16_RULES)}, got '{uint16}'")
        os.environ["MLCLS_VOLUME_UINT16"] = uint16


def _npy_header(f, name: str) -> tuple[tuple, np.dtype]:
    """``(shape, dtype)`` from an open ``.npy`` stream's header, nothing else read."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
    except ValueError:
        raise DataError(f"{name}: not a NumPy .npy array (its first bytes are not the NPY header)") from None
    try:
        shape, _, dtype = fmt._read_array_header(f, version) if hasattr(fmt, "_read_array_header") else fmt.read_array_header_1_0(f)
    except ValueError as e:
        raise DataError(f"{name}: the .npy header is malformed ({e})") from None
    if dtype.hasobject:
        raise DataError(f"{name}: holds Python objects (a pickled array), which mlcls never unpickles (it could run code)")
    return shape, dtype


def volume_header(path: str) -> tuple[tuple, np.dtype, str | None]:
    """``(shape, dtype, npz member)`` of a ``.npy``/``.npz`` volume from its header alone.

    Raises:
        DataError: not an .npy/.npz file, a pickled (object) array, an .npz without one clear array.
    """
    check_regular_file(path, path)
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":  # an .npz is a zip archive
            f.seek(0)
            return (*_npy_header(f, path), None)
    try:
        with zipfile.ZipFile(path) as z:
            names = [n[:-4] for n in z.namelist() if n.endswith(".npy")]
            key = "volume" if "volume" in names else names[0] if len(names) == 1 else None
            if key is None:
                raise DataError(f"{path}: an .npz volume needs one array or one named 'volume', found {names}")
            with z.open(key + ".npy") as member:
                return (*_npy_header(member, f"{path} ({key})"), key)
    except zipfile.BadZipFile as e:
        raise DataError(f"{path}: not a readable .npz archive ({e})") from None


def check_volume_size(shape: tuple, dtype: np.dtype, name: str) -> None:
    """A volume's slices and bytes (as stored) against :func:`volume_settings`, before it is read.

    Raises:
        DataError: naming the volume, what it holds and the limit (and how to raise it).
    """
    limits = volume_settings()
    slices = int(shape[0]) if shape else 0
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if limits["max_slices"] is not None and slices > limits["max_slices"]:
        raise DataError(
            f"{name}: {slices} slices of shape {tuple(shape[1:])} is above the limit of {limits['max_slices']} slices, refused before "
            "reading it; raise the limit with the config key max_volume_slices (0: no limit) if you meant it"
        )
    if limits["max_bytes"] is not None and nbytes > limits["max_bytes"]:
        raise DataError(
            f"{name}: {nbytes / 2**20:.0f} MiB of {dtype} data (shape {tuple(shape)}) is above the limit of "
            f"{limits['max_bytes'] / 2**20:.0f} MiB, refused before reading it; raise the limit with the config key "
            "max_volume_bytes (0: no limit) if you meant it"
        )


def load_volume(path: str) -> torch.Tensor:
    """A ``.npy``/``.npz`` volume as uint8 ``[S, 3, H, W]`` (see the module docstring for dtypes).

    Its header is read first: the format, the dtype and the size limits are checked before any
    data is read, and nothing is ever unpickled.
    """
    shape, dtype, member = volume_header(path)
    check_volume_size(shape, dtype, path)
    try:
        data = np.load(path, allow_pickle=False)
        if member is not None:
            with data:
                data = data[member]
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"{path}: cannot read the volume ({e})") from None
    return volume_to_uint8(data, path, check_pixels)


def uint16_to_uint8(arr: np.ndarray, name: str, rule: str) -> np.ndarray:
    """uint16 -> uint8 by ``rule`` (config key ``volume_uint16``):

    * ``range`` (default): ``x * 255 / max`` over the volume, so 12-bit MRI, or values that never
      leave the low byte, keep their contrast (an all-zero volume stays zero);
    * ``full``: ``x >> 8``, the whole 16-bit range as 16-bit images are shown (values under 256
      become 0, so such a volume is refused rather than turned black);
    * ``12bit``: ``x >> 4`` for data in 0..4095 (a larger value is an error, never clipped).
    """
    if rule == "range":
        hi = int(arr.max())
        return arr.astype(np.uint8) if hi == 0 else np.rint(arr.astype(np.float32) * (255.0 / hi)).astype(np.uint8)
    if rule == "12bit":
        hi = int(arr.max())
        if hi > 4095:
            raise DataError(f"{name}: volume_uint16 is '12bit' but the volume holds {hi} (above 4095); use 'range' or 'full'")
        return (arr >> 4).astype(np.uint8)
    out = (arr >> 8).astype(np.uint8)
    if arr.any() and not out.any():
        raise DataError(
            f"{name}: volume_uint16 is 'full' (x >> 8) but every value is below 256 (max {int(arr.max())}), so the "
            "volume would be all zeros; use volume_uint16: range (the default) or 12bit"
        )
    return out


def volume_to_uint8(arr: np.ndarray, name: str, check_pixels: Callable | None = None) -> torch.Tensor:
    """``(S, H, W)`` or ``(S, H, W, C)`` array -> uint8 ``[S, 3, H, W]``."""
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3) or 0 in arr.shape:
        raise DataError(f"{name}: expected a volume of shape (slices, H, W) or (slices, H, W, 1|3), got {arr.shape}")
    if check_pixels is not None:
        check_pixels(arr.shape[2], arr.shape[1], f"{name} (each of {arr.shape[0]} slices)")
    if arr.dtype == np.uint16:
        arr = uint16_to_uint8(arr, name, volume_settings()["uint16"])
    elif arr.dtype.kind == "f":
        finite = np.isfinite(arr)
        if not finite.all():
            bad = int((~finite).sum())
            kinds = ", ".join(k for k, m in (("NaN", np.isnan(arr)), ("infinite", np.isinf(arr))) if m.any())
            seen = f"; the finite values span {float(arr[finite].min()):g}..{float(arr[finite].max()):g}" if finite.any() else ""
            raise DataError(f"{name}: float volume holds {bad} {kinds} value(s) of {arr.size}{seen}; values must be finite")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0 or hi > 255:
            raise DataError(f"{name}: float volume values must be in 0..1 or 0..255, found {lo:g}..{hi:g}")
        arr = np.rint(arr * 255 if hi <= 1 else arr).astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise DataError(f"{name}: volume dtype {arr.dtype} is not supported (uint8, uint16 or float)")
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2)
    return (x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x).contiguous()


def load_bag(path: str) -> torch.Tensor:
    """The instances of one bag as uint8 ``[S, 3, H, W]``: a volume file, a folder of images or
    ``a|b|c`` image files. Images of one bag must share their size."""
    if path.lower().endswith(VOLUME_EXTENSIONS):
        return load_volume(path)
    if LIST_SEPARATOR in path:
        files = path.split(LIST_SEPARATOR)
    elif os.path.isdir(path):
        files = [os.path.join(path, f) for f in sorted(os.listdir(path), key=natural_key) if f.lower().endswith(IMG_EXTENSIONS)]
        if not files:
            raise DataError(f"{path}: a folder with neither image files ({', '.join(IMG_EXTENSIONS)}) nor volumes (.npy, .npz) in it")
    else:
        raise DataError(f"{path}: not a volume (.npy/.npz), a folder of images or a '|'-separated list of images")
    images = [load_image(f) for f in files]
    sizes = {tuple(x.shape) for x in images}
    if len(sizes) > 1:
        a = images[0].shape
        j = next(k for k, x in enumerate(images) if x.shape != a)
        raise DataError(
            f"{path}: the images of one bag differ in size: {a[-2]}x{a[-1]} ({files[0]}) and "
            f"{images[j].shape[-2]}x{images[j].shape[-1]} ({files[j]})"
        )
    return torch.stack(images)


def subsample(bag: torch.Tensor, max_instances: int | None, training: bool) -> torch.Tensor:
    """At most ``max_instances`` instances: evenly spaced in evaluation (deterministic, covering
    the whole series), a random subset kept in order in training (drawn from torch's RNG, which
    mlcls seeds per batch)."""
    s = bag.shape[0]
    if not max_instances or s <= max_instances:
        return bag
    if training:
        keep = torch.randperm(s)[:max_instances].sort().values
    else:
        keep = torch.tensor(evaluation_indices(s, max_instances))
    return bag[keep]


def evaluation_indices(s: int, max_instances: int | None) -> list[int]:
    """Which of ``s`` instances evaluation keeps (:func:`subsample`): all, or ``max_instances``
    evenly spaced ones, first and last included; so an instance's evidence names its own slice."""
    if not max_instances or s <= max_instances:
        return list(range(s))
    return torch.linspace(0, s - 1, max_instances).round().long().tolist()


@dataclass
class BagBatch:
    """A batch of bags, packed: per view, all instances in one tensor and each sample's count.

    Attributes:
        views: ``{view: (instances [N_v, 3, H, W], sizes [B] int64)}`` with ``N_v = sizes.sum()``;
            a dataset without views has the single view ``""``.
    """

    views: dict[str, tuple[torch.Tensor, torch.Tensor]]

    def __len__(self) -> int:
        return int(next(iter(self.views.values()))[1].numel())

    @property
    def batch_size(self) -> int:
        return len(self)

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "BagBatch":
        """The same batch with ``fn`` applied to every view's instance tensor (sizes unchanged)."""
        return BagBatch({v: (fn(x), n) for v, (x, n) in self.views.items()})

    def to(self, device=None, non_blocking: bool = False, memory_format: torch.memory_format = torch.preserve_format, **kw) -> "BagBatch":
        return BagBatch(
            {v: (x.to(device, non_blocking=non_blocking, memory_format=memory_format), n.to(device)) for v, (x, n) in self.views.items()}
        )

    def flip(self, *dims: int) -> "BagBatch":
        """Flip every instance along image dimensions (negative ``dims``: -1 width, -2 height)."""
        if any(d >= 0 for d in dims):
            raise ValueError("BagBatch.flip: give image dimensions as negative indices (-1 width, -2 height)")
        return self.map(lambda x: x.flip(*dims))

    def pin_memory(self) -> "BagBatch":  # called by a DataLoader with pin_memory=True
        return BagBatch({v: (x.pin_memory(), n.pin_memory()) for v, (x, n) in self.views.items()})

    def select(self, i: int) -> "BagBatch":
        """Sample ``i`` alone, as a batch of one."""
        out = {}
        for v, (x, n) in self.views.items():
            start = int(n[:i].sum())
            out[v] = (x[start : start + int(n[i])], n[i : i + 1])
        return BagBatch(out)


def pack(samples: list) -> BagBatch:
    """Bags (each ``[S, 3, H, W]`` or ``{view: [S_v, 3, H, W]}``) -> one :class:`BagBatch`."""
    first = samples[0]
    names = list(first) if isinstance(first, dict) else [""]
    views = {}
    for v in names:
        bags = [s[v] if isinstance(s, dict) else s for s in samples]
        views[v] = (torch.cat(bags), torch.tensor([b.shape[0] for b in bags], dtype=torch.long))
    return BagBatch(views)


def collate_bags(batch: list) -> tuple:
    """``collate_fn`` of bag datasets: ``(BagBatch, targets [B, C][, indices [B]])``."""
    fields = list(zip(*batch))
    rest = [torch.utils.data.default_collate(list(f)) for f in fields[1:]]
    return (pack(list(fields[0])), *rest)
