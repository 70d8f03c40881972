"""mlcls.cli: what every tool's main() shares."""

import signal

import pytest

from mlcls import cli
from mlcls.errors import ConfigError


def test_a_tool_called_from_python_leaves_the_sigterm_handler_as_it_found_it():
    # a test (or notebook) calling tools' main() used to keep mlcls's SIGTERM handler for good:
    # a later `kill` of the test process then surfaced as a failure inside whatever test ran
    old = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        seen = []

        @cli.cli_main
        def ok():
            seen.append(signal.getsignal(signal.SIGTERM))

        @cli.cli_main
        def bad():
            raise ConfigError("x: expected y")

        ok()
        assert seen == [cli._terminate]  # during the call SIGTERM unwinds like Ctrl-C
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        with pytest.raises(SystemExit) as e:
            bad()
        assert e.value.code == 2 and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, old)
