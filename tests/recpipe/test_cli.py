"""The ``recpipe`` front: a reader that closes the pipe early ends the command quietly."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from recpipe.cli import EXIT_BROKEN_PIPE
from tests.conftest import REPO


def run_into_closed_pipe(args: list[str], unbuffered: bool) -> subprocess.CompletedProcess:
    """Run ``python -m recpipe ARGS`` with standard output a pipe whose reader is gone, as
    with ``recpipe ARGS | head -1`` once head has exited: every write fails with EPIPE.

    Buffered (a user's shell), the failure comes when the output is flushed; unbuffered
    (``PYTHONUNBUFFERED`` set), at the first write.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run([sys.executable, "-m", "recpipe", *args], stdout=write,
                              stderr=subprocess.PIPE, text=True, cwd=REPO, env=env,
                              timeout=120, check=False)
    finally:
        os.close(write)


@pytest.mark.parametrize(("args", "unbuffered"), [
    (["--help"], False), (["--help"], True), (["bench", "--help"], False),
    (["bench", "--help"], True),
    # argparse's own --help: its output waits in the buffer until the exit flushes it
    (["data", "fetch", "--help"], False),
])
def test_a_closed_pipe_ends_the_command_without_a_traceback(args, unbuffered):
    proc = run_into_closed_pipe(args, unbuffered)
    assert "Traceback" not in proc.stderr
    assert "BrokenPipeError" not in proc.stderr
    assert proc.returncode == EXIT_BROKEN_PIPE, proc.stderr


def test_an_open_pipe_still_gets_the_whole_output():
    proc = subprocess.run([sys.executable, "-m", "recpipe", "--help"], capture_output=True,
                          text=True, cwd=REPO, timeout=120, check=True)
    assert proc.stdout.startswith("usage: recpipe COMMAND")
    assert "  bench " in proc.stdout


def test_help_lists_only_commands_that_exist():
    import importlib

    from recpipe.cli import COMMANDS

    for name, (module, _) in COMMANDS.items():
        assert callable(importlib.import_module(module).main), name
