"""JPEG decoding on the device (``decode_on_device: true`` in a dataloader section).

DataLoader workers then only read each file's bytes (and check its header); the batch crosses to
the training process still encoded, and :class:`DeviceDecode` decodes it where the model runs --
nvjpeg on a GPU (``torchvision.io.decode_jpeg(list, device="cuda")``, one call per batch),
libjpeg-turbo on the CPU -- applies the EXIF orientation and the dataset's pipeline to each image
there, stacks the batch and normalises it. Random augmentations draw from the batch's seed exactly
as the workers would have (:func:`~mlcls.datasets.samplers.fetch_seeded`), so on the CPU the
batches are bit-identical to decoding in the workers; on a GPU nvjpeg's pixels may differ from
libjpeg-turbo's by a grey level or so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import torch
import torchvision.io as tv_io
from torch.utils.data import default_collate

from mlcls.datasets.image_io import apply_orientation, check_batch_sizes, load_image_bytes
from mlcls.datasets.samplers import SeededBatch, fetch_seeded

logger = logging.getLogger("mlcls")


@dataclass(frozen=True)
class EncodedImage:
    """One sample's image as its worker hands it over: the file's bytes, undecoded."""

    data: torch.Tensor  # uint8 [n], the JPEG file
    orientation: int  # EXIF orientation 1-8
    path: str
    seed: int | None  # the batch's augmentation seed (SeededBatchSampler), None when unseeded


@dataclass(frozen=True)
class EncodedBatch:
    """A batch of encoded images: all their bytes in one flat uint8 tensor (one shared-memory segment
    from a worker, not one per image). ``.to(device)`` only records where :class:`DeviceDecode`
    decodes it: the decoder reads the bytes from host memory itself."""

    data: torch.Tensor  # uint8 [total bytes]
    offsets: tuple[int, ...]  # image k is data[offsets[k]:offsets[k + 1]]
    orientations: tuple[int, ...]
    paths: tuple[str, ...]
    seed: int | None
    device: torch.device = torch.device("cpu")

    @classmethod
    def of(cls, images: Sequence[EncodedImage]) -> "EncodedBatch":
        offsets = [0]
        for im in images:
            offsets.append(offsets[-1] + im.data.numel())
        data = torch.cat([im.data for im in images]) if images else torch.empty(0, dtype=torch.uint8)
        seed = images[0].seed if images else None
        return cls(data, tuple(offsets), tuple(im.orientation for im in images), tuple(im.path for im in images), seed)

    def encoded(self, k: int) -> torch.Tensor:
        """Image ``k``'s JPEG bytes, uint8 [n]."""
        return self.data[self.offsets[k] : self.offsets[k + 1]]

    def to(self, device, non_blocking: bool = False, memory_format=None) -> "EncodedBatch":
        return replace(self, device=torch.device(device))

    def pin_memory(self, device=None) -> "EncodedBatch":
        return self  # nothing to copy: nvjpeg reads the bytes where they are

    def __len__(self) -> int:
        return len(self.paths)


def stack_images(samples: Sequence) -> "EncodedBatch | torch.Tensor":
    """A dataset's images (uint8 [3, H, W] tensors, or :class:`EncodedImage` under ``decode_on_device``)
    as one batch for the loader's ``batch_transform``, as its collate would make it."""
    return EncodedBatch.of(samples) if isinstance(samples[0], EncodedImage) else torch.stack(list(samples))


def collate_encoded(batch: list) -> tuple:
    """``collate_fn`` of ``decode_on_device`` loaders: ``(EncodedBatch, targets [B, C][, indices [B]])``."""
    fields = list(zip(*batch))
    return (EncodedBatch.of(fields[0]), *(default_collate(list(f)) for f in fields[1:]))


class DeviceDecode:
    """``EncodedBatch -> float32 [B, 3, H, W]`` on the batch's device: decode, orient, the per-image
    pipeline (seeded per batch), stack, then ``normalize`` once for the whole batch.

    Args:
        pipeline: the dataset's per-image transforms (uint8 [3, H, W] in; any device).
        normalize: the batch normalisation (the pipeline's final ``ToFloatNormalize``), or None.
    """

    def __init__(self, pipeline: Callable, normalize: Callable | None = None) -> None:
        self.pipeline, self.normalize = pipeline, normalize
        self._warned: set[str] = set()

    def __call__(self, batch: EncodedBatch) -> torch.Tensor:
        images = self.decode(batch)
        order = SeededBatch(range(len(images)))
        order.seed = batch.seed
        images = fetch_seeded(lambda k: self.pipeline(images[k]), order)  # the worker's random draws
        check_batch_sizes([tuple(x.shape) for x in images], lambda k: batch.paths[k])
        out = torch.stack(images)
        return self.normalize(out) if self.normalize is not None else out

    def decode(self, batch: EncodedBatch) -> list[torch.Tensor]:
        """The batch's images as uint8 [3, H, W] on ``batch.device``, EXIF orientation applied."""
        data = [batch.encoded(k) for k in range(len(batch))]
        try:  # one call for the whole batch: nvjpeg's batched decoder on a GPU
            decoded = tv_io.decode_jpeg(data, mode=tv_io.ImageReadMode.RGB, device=batch.device)
        except RuntimeError:  # a file the device decoder cannot read (a CMYK or lossless JPEG): find it
            return [self._decode_one(batch, k) for k in range(len(batch))]
        return [apply_orientation(x, o) for x, o in zip(decoded, batch.orientations)]

    def _decode_one(self, batch: EncodedBatch, k: int) -> torch.Tensor:
        data, path = batch.encoded(k), batch.paths[k]
        try:
            return apply_orientation(tv_io.decode_jpeg(data, mode=tv_io.ImageReadMode.RGB, device=batch.device), batch.orientations[k])
        except RuntimeError as e:
            if path not in self._warned:
                self._warned.add(path)
                logger.warning("decode_on_device: %s: the %s decoder refused it (%s); decoded on the CPU instead", path, batch.device, e)
            # the workers' decoder (torchvision, else Pillow), EXIF orientation included
            return load_image_bytes(data.numpy().tobytes(), path).to(batch.device)
