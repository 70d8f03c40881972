"""Decoding image files: the one place mlcls opens an image, with the pixel limit checked first.

Images come out as uint8 RGB [3, H, W] whatever the file holds: EXIF orientation applied,
transparency over black, 16/32-bit greyscale scaled to 8 bits. PNG and JPEG headers are parsed
directly to check the size before decoding (a few µs); other formats go through Pillow's lazy open.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from typing import Callable, Sequence

import numpy as np
import torch
import torchvision.io as _tv_io
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms.v2.functional import to_dtype

from mlcls.errors import DataError

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
_TV_DECODABLE = (".jpg", ".jpeg", ".png", ".gif", ".webp")


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
    return Image.MAX_IMAGE_PIXELS


def set_max_image_pixels(limit: int | None) -> None:
    """Set the pixel limit of :func:`max_image_pixels` for this process and the ones it starts."""
    os.environ["MLCLS_MAX_IMAGE_PIXELS"] = str(int(limit or 0))
    Image.MAX_IMAGE_PIXELS = int(limit) if limit else None  # Pillow's own check must not refuse below ours


def check_pixels(width: int, height: int, name: str) -> None:
    limit = max_image_pixels()
    if limit is not None and width * height > limit:
        raise DataError(
            f"{name}: {width}x{height} pixels ({width * height / 1e6:.1f} Mpx) is above the limit of {limit / 1e6:.1f} Mpx, "
            "refused before decoding (a decompression bomb, or a scan this large?); raise the limit with the config key "
            "max_image_pixels or MLCLS_MAX_IMAGE_PIXELS if you meant it"
        )


def check_regular_file(path, name: str) -> None:
    """Refuse a path that exists but is not a regular file (a FIFO or a device would block the
    read forever, or never end); a missing file is left to the caller's own error."""
    if isinstance(path, (str, os.PathLike)) and os.path.exists(path) and not os.path.isfile(path) and not os.path.isdir(path):
        raise DataError(f"{name}: not a regular file (a pipe or device); not read")


def open_image(source, name: str):
    """``PIL.Image.open`` (header only, nothing decoded yet) with the pixel limit checked: the one
    place where mlcls opens an image file, whatever decodes it afterwards.

    Raises:
        DataError: the image is above :func:`max_image_pixels`, or Pillow cannot identify it.
    """
    try:
        if isinstance(source, io.BytesIO):
            head = bytes(source.getbuffer()[:65536])
        else:
            check_regular_file(source, name)
            with open(source, "rb") as f:
                head = f.read(65536)
        size = _png_size(head, any_mode=True) or _jpeg_size(head)
        if size is not None:  # before Pillow's own check, which says less (and only above twice its limit)
            check_pixels(*size, name)
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
    check_pixels(*img.size, name)
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
        check_pixels(*size, name)
        decoded = _decode_with_torchvision(data)
        if decoded is not None:
            return decoded
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


def check_batch_sizes(shapes: Sequence[tuple[int, ...]], name: Callable[[int], str]) -> None:
    """A batch is one tensor: images of different sizes (no Resize or crop in the pipeline) are one
    error naming both sizes and a file of each (``name(k)``), not torch.stack's bare RuntimeError."""
    first = shapes[0] if shapes else None
    j = next((k for k, sh in enumerate(shapes) if sh != first), None)
    if j is None:
        return
    raise DataError(
        f"images of different sizes in one batch: {first[-2]}x{first[-1]} ({name(0)}) and {shapes[j][-2]}x{shapes[j][-1]} "
        f"({name(j)}); add a Resize (e.g. {{type: Resize, size: [224, 224]}}) or a crop to the pipeline so every image has the same size"
    )


def read_jpeg(path: str) -> tuple[torch.Tensor, int]:
    """A JPEG file's encoded bytes (uint8 [n]) and its EXIF orientation (1-8, 1 when absent), the size
    in its header checked against :func:`max_image_pixels`: what a DataLoader worker hands over when
    the decoding happens on the device (``decode_on_device``).

    Raises:
        DataError: the file is not a JPEG (only JPEG has a batched device decoder), or is too large.
    """
    data = _tv_io.read_file(path)
    head = data[:65536].numpy().tobytes()
    size = _jpeg_size(head)
    if size is None:
        raise DataError(
            f"{path}: not a JPEG file (decode_on_device decodes JPEG only; drop decode_on_device from the "
            "dataloader section to decode other formats in the workers)"
        )
    check_pixels(*size, path)
    return data, jpeg_orientation(head)


def jpeg_orientation(head: bytes) -> int:
    """The EXIF orientation tag (1-8) of a JPEG from its first bytes; 1 (as stored) when it has none."""
    i, n = 2, len(head)
    while i + 4 <= n and head[i] == 0xFF:
        marker, length = head[i + 1], int.from_bytes(head[i + 2 : i + 4], "big")
        if marker == 0xDA or marker in _SOF:  # image data or its frame: EXIF comes before them
            return 1
        if marker == 0xE1 and head[i + 4 : i + 10] == b"Exif\x00\x00":
            return _tiff_orientation(head[i + 10 : i + 2 + length])
        i += 2 + length
    return 1


def _tiff_orientation(tiff: bytes) -> int:
    order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 1
    ifd = int.from_bytes(tiff[4:8], order)
    if ifd + 2 > len(tiff):
        return 1
    for k in range(int.from_bytes(tiff[ifd : ifd + 2], order)):
        entry = tiff[ifd + 2 + 12 * k : ifd + 14 + 12 * k]
        if len(entry) < 12:
            return 1
        if int.from_bytes(entry[:2], order) == 0x0112:  # Orientation, a SHORT stored in the value field
            value = int.from_bytes(entry[8:10], order)
            return value if 1 <= value <= 8 else 1
    return 1


def apply_orientation(img: torch.Tensor, orientation: int) -> torch.Tensor:
    """An image [..., H, W] as EXIF ``orientation`` (1-8) says to show it: what decoding with
    ``apply_exif_orientation=True`` does on the CPU, for decoders that cannot (nvjpeg)."""
    if orientation in (5, 6, 7, 8):
        img = img.transpose(-1, -2)
    dims = {2: (-1,), 3: (-2, -1), 4: (-2,), 6: (-1,), 7: (-2, -1), 8: (-2,)}.get(orientation)
    return img.flip(dims) if dims else img


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
    if img.dtype == torch.uint16:  # not every torch op supports uint16: go through int32
        img = img.to(torch.int32)
        return (img >> 8).to(torch.uint8)
    return to_dtype(img, torch.uint8, scale=True)


def pil_to_uint8(img) -> torch.Tensor:
    """A PIL image as uint8 RGB [3, H, W], decoded exactly as :func:`load_image` decodes a file:
    EXIF orientation, transparency over black, 16/32-bit greyscale scaled (not clipped) to 8 bits."""
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
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(bg, img)
    arr = np.asarray(img.convert("RGB"))
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def samples_for_display(dataset, indices: Sequence[int]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The images of ``indices`` as files hold them (uint8 [3, H, W], no pipeline) and their targets [K, C].

    ``dataset``: a :class:`~mlcls.datasets.protocols.LabelledDataset` of single images (``image_path``,
    ``get_target``); what prediction grids draw.
    """
    images = [load_image(dataset.image_path(int(i))) for i in indices]
    return images, torch.stack([dataset.get_target(int(i)) for i in indices])
