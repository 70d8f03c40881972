"""Shared by the command-line tools: one clear line and exit status 2 for user errors."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from mlcls.errors import MlclsError  # noqa: E402


def cli_main(fn):
    """Run ``fn``; an :class:`MlclsError` (bad config, data, checkpoint) prints ``error: ...`` and exits 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MlclsError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper
