"""Ctrl-C in a CLI command (``bot.cli.common.friendly``): "Interrupted.", exit 130, and at once,
skipping the interpreter's shutdown, when the embedding model's loader is still running (it may
hold the import lock that shutdown's finalizers wait on: ``bot.exits``)."""

from __future__ import annotations

import subprocess
import sys

import pytest

COMMAND = """
import atexit, sys, threading, time
import typer
from bot.cli.common import friendly

atexit.register(lambda: print("shut down in order", file=sys.stderr, flush=True))
app = typer.Typer()

@app.command()
@friendly
def slow(loading: bool = False) -> None:
    if loading:
        threading.Thread(target=time.sleep, args=(600,), daemon=True, name="memory-warm").start()
    raise KeyboardInterrupt

app()
"""


@pytest.mark.parametrize("loading", [False, True])
def test_ctrl_c_in_a_command_is_told_and_ends_it(loading: bool) -> None:
    args = [sys.executable, "-c", COMMAND, *(["--loading"] if loading else [])]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 130, done.stderr
    assert "Interrupted." in done.stderr and "Traceback" not in done.stderr
    # With the loader running, the process leaves without the interpreter's shutdown.
    assert ("shut down in order" in done.stderr) is not loading
