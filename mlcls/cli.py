"""What every command-line tool shares: one clear line and a distinct exit status per kind of failure."""

from __future__ import annotations

import argparse
import functools
import math
import signal
import sys
import threading

from mlcls.errors import MlclsError
from mlcls.schema import SEED_MAX


def cli_main(fn):
    """Run ``fn`` as a command: one ``error: ...`` line and a distinct exit status for each kind of failure.

    2: bad input (:class:`MlclsError`: config, data, checkpoint); 3: an output could not be
    written (disk full, read-only folder); 130: Ctrl-C; 143: SIGTERM.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        # SIGTERM (a scheduler's kill, `kill PID`) unwinds like Ctrl-C: files being written are
        # removed, finished ones stay; the default action would end the process mid-write
        # only for the call's duration: a tool's main() called from Python (a test, a notebook)
        # leaves the process's handler as it found it
        installed = threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        if installed:
            signal.signal(signal.SIGTERM, _terminate)
        try:
            return fn(*args, **kwargs)
        except MlclsError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(getattr(e, "exit_code", 2))
        except OSError as e:  # an I/O failure outside mlcls's own writers (a full disk, a vanished folder)
            where = f" ({e.filename})" if e.filename else ""
            print(f"error: input/output failure{where}: {e.strerror or e}; files mlcls finished writing are intact", file=sys.stderr)
            sys.exit(3)
        except KeyboardInterrupt:
            print("interrupted (Ctrl-C): files being written were discarded; finished checkpoints are intact", file=sys.stderr)
            sys.exit(130)
        except Terminated:
            print("terminated (SIGTERM): files being written were discarded; finished checkpoints are intact", file=sys.stderr)
            sys.exit(143)
        finally:
            if installed:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)

    return wrapper


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM (a BaseException, like KeyboardInterrupt, so that
    ``except Exception`` blocks do not swallow it)."""


#: set once SIGTERM arrived: code that catches ``Exception`` around work checks it, because a
#: library may turn the Terminated raised inside its callback into an error of its own (torch.save does)
TERMINATION = threading.Event()


def _terminate(signum, frame):
    TERMINATION.set()
    raise Terminated()


#: the most bootstrap resamples a command takes (10^5 already gives intervals steady to a few 0.01)
MAX_RESAMPLES = 100_000


def int_in(low: int, high: int, what: str = "an integer"):
    """An argparse ``type``: an integer in ``[low, high]``, else argparse's one-line usage error
    (checked before any work: a seed or a count out of range never fails after hours of training)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} from {low} to {high}, got '{text}'") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {what} from {low} to {high}, got {value}")
        return value

    return parse


def seed_arg():
    """An argparse ``type`` for seeds: 0 .. 2^32 - 1, what every generator and split takes."""
    return int_in(0, SEED_MAX, "a seed")


def resamples_arg():
    """An argparse ``type`` for bootstrap resample counts: 1 .. :data:`MAX_RESAMPLES`."""
    return int_in(1, MAX_RESAMPLES, "a number of resamples")


def int_at_least(low: int):
    """An argparse ``type``: an integer >= ``low``, else argparse's one-line usage error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got '{text}'") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value

    return parse


def number_in(low: float, high: float, low_open: bool = False):
    """An argparse ``type``: a finite number in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    span = f"{'(' if low_open else '['}{low:g}, {high:g}]"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number in {span}, got '{text}'") from None
        if not (math.isfinite(value) and (low < value if low_open else low <= value) and value <= high):
            raise argparse.ArgumentTypeError(f"expected a number in {span}, got {text}")
        return value

    return parse
