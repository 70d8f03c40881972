"""Optimizer construction choices that depend on the device."""

from __future__ import annotations

import torch

from mlcls.engine.optim import build_optimizer


def test_cuda_parameters_get_a_fused_optimizer_unless_the_config_chooses(monkeypatch):
    """The CUDA branch, reached by parameters that report CUDA: Adam/AdamW/SGD default to fused=True
    (a skipped non-finite step then needs no host sync); an explicit fused/foreach is kept; CPU unchanged."""
    from unittest import mock

    from mlcls.engine import optim

    model = torch.nn.Linear(3, 2)
    assert build_optimizer({"type": "AdamW", "lr": 0.1}, model).param_groups[0].get("fused") in (None, False)
    with mock.patch.object(torch.Tensor, "is_cuda", new_callable=mock.PropertyMock, return_value=True):
        for cfg, expected in [({"type": "AdamW", "lr": 0.1}, True), ({"type": "SGD", "lr": 0.1}, True),
                              ({"type": "AdamW", "lr": 0.1, "foreach": True}, None), ({"type": "RMSprop", "lr": 0.1}, None)]:  # fmt: skip
            optim._prefer_fused(cfg, model)
            assert cfg.get("fused") is expected, cfg
