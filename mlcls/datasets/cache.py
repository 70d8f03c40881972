"""Decoded images kept in shared memory (``cache: true``): decode once, read every epoch."""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from mlcls.errors import DataError

logger = logging.getLogger("mlcls")


def available_memory() -> int:
    """Bytes of RAM available now (Linux ``MemAvailable``; total physical memory elsewhere)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


class ImageCache:
    """All images of a dataset as one flat uint8 tensor in shared memory, plus offsets and shapes.

    One tensor (not one object per image) means DataLoader workers share the pages with the main
    process (``share_memory_``, so spawn-started workers too) and no reference counts are touched.
    """

    def __init__(self, data: torch.Tensor, offsets: torch.Tensor, shapes: torch.Tensor) -> None:
        self.data, self.offsets, self.shapes = data, offsets, shapes

    def get(self, idx: int) -> torch.Tensor:
        a, b = int(self.offsets[idx]), int(self.offsets[idx + 1])
        if a == b:
            raise DataError(f"image {idx} could not be decoded when the cache was built")
        c, h, w = self.shapes[idx].tolist()
        return self.data[a:b].view(c, h, w)

    @property
    def nbytes(self) -> int:
        return self.data.numel()

    @classmethod
    def build(cls, dataset, threads: int | None = None, max_fraction: float = 0.6) -> "ImageCache":
        """Decode (and apply ``dataset.cache_transform``) every image with a thread pool.

        Raises:
            DataError: the images would take more than ``max_fraction`` of the available RAM
                (estimated from the first images), or one is unreadable under ``on_bad_image: raise``.
        """
        n = len(dataset)
        t0 = time.perf_counter()

        def load(i: int) -> torch.Tensor | None:
            try:
                img = dataset.read_image(i)
            except DataError as e:
                if dataset._bad is None:
                    raise
                dataset._bad[i] = 1
                logger.warning("on_bad_image=skip: %s", e)
                return None
            return dataset.cache_transform(img) if dataset.cache_transform is not None else img

        threads = threads or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(threads) as pool:  # decoders release the GIL
            probe = list(pool.map(load, range(min(n, 32))))
            sizes = [x.numel() for x in probe if x is not None]
            estimate = (sum(sizes) / max(1, len(sizes))) * n
            if estimate > max_fraction * available_memory():
                raise DataError(
                    f"cache: the {n} images need about {estimate / 2**30:.1f} GiB, more than {max_fraction:.0%} of the "
                    f"{available_memory() / 2**30:.1f} GiB available; set cache: false or resize in the pipeline's first step"
                )
            images = probe + list(pool.map(load, range(len(probe), n)))
        lengths = np.array([0 if x is None else x.numel() for x in images], dtype=np.int64)
        offsets = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)]))
        data = torch.empty(int(offsets[-1]), dtype=torch.uint8)
        shapes = torch.zeros(n, 3, dtype=torch.int32)
        for i, x in enumerate(images):
            if x is not None:
                data[offsets[i] : offsets[i + 1]] = x.reshape(-1)
                shapes[i] = torch.tensor(x.shape)
        del images
        cache = cls(data.share_memory_(), offsets.share_memory_(), shapes.share_memory_())
        logger.info("cache: %d images, %.1f MiB, built in %.1fs", n, cache.nbytes / 2**20, time.perf_counter() - t0)
        return cache
