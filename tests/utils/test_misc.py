"""Seeding: deterministic runs must reach every backend that would otherwise choose its own reduction order."""

from __future__ import annotations

import torch

from mlcls.utils.misc import set_random_seed


def test_deterministic_reaches_onednn(monkeypatch):
    # the flags are process-wide: give them back as they were
    monkeypatch.setattr(torch.backends.mkldnn, "deterministic", False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    was = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        set_random_seed(0, deterministic=False)
        assert torch.backends.mkldnn.deterministic is False  # left alone when not asked
        set_random_seed(0, deterministic=True)
        assert torch.backends.mkldnn.deterministic is True  # CPU convolutions without atomics
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.benchmark is False
    finally:
        torch.use_deterministic_algorithms(was[0], warn_only=was[1])
