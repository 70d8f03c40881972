"""Shared pieces of the fault-injection suite: one trained run and the one-line-error check."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import tiny_config


@pytest.fixture(scope="package")
def trained_ckpt(shapes_root, tmp_path_factory) -> Path:
    """latest.pth of one 1-epoch run (read-only for the tests: copy before writing)."""
    from mlcls.apis import train_model

    wd = tmp_path_factory.mktemp("reliability") / "run"
    train_model(tiny_config(shapes_root, wd, max_epochs=1))
    return wd / "latest.pth"


def one_line_error(r, *needles: str, code: int = 2) -> str:
    """The tool failed with ``code`` and a single ``error:`` line containing every needle (no traceback)."""
    assert r.returncode == code, (r.returncode, r.stderr[-2000:])
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]
