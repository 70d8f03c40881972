"""One trained and evaluated tiny run shared by the report tests (read-only: tests write elsewhere)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import tiny_config


@pytest.fixture(scope="session")
def evaluated(shapes_root, tmp_path_factory) -> dict:
    """2 epochs of ResNet-18 on the tiny shapes set, then ``test_model(report=True)`` on its test split."""
    from mlcls.apis import test_model, train_model

    wd = tmp_path_factory.mktemp("report") / "run"
    train_model(tiny_config(shapes_root, wd, max_epochs=2))
    metrics = test_model(None, str(wd / "latest.pth"), report=True)
    return {"run": wd, "checkpoint": wd / "latest.pth", "test_dir": wd / "test_latest", "metrics": metrics}


def embedded_data(html: Path) -> dict:
    """The JSON a report page embeds."""
    import json

    text = html.read_text(encoding="utf-8")
    start = text.index('<script type="application/json" id="report-data">') + len('<script type="application/json" id="report-data">')
    return json.loads(text[start : text.index("</script>", start)])
