"""The evaluator declares the names of the metrics it returns."""

from __future__ import annotations

import pytest
import torch

from mlcls.evaluation import MultiLabelMetric


@pytest.mark.parametrize("topk", [None, 3])
def test_metric_names_are_the_scalars_compute_returns(topk):
    """Monitored metrics (save_best, EarlyStoppingHook.monitor) are checked against metric_names()
    before training: it must list exactly the scalars an evaluation returns."""
    metric = MultiLabelMetric(topk=topk)
    g = torch.Generator().manual_seed(0)
    got = metric.evaluate(torch.rand(30, 5, generator=g), (torch.rand(30, 5, generator=g) > 0.5).float())
    scalars = {k for k, v in got.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert set(metric.metric_names()) == scalars
