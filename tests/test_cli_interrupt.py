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


def test_after_ctrl_c_at_a_question_a_stuck_cleanup_is_cut_short() -> None:
    """``familiar ask``: once the question is interrupted, cleanup that blocks (here a sleep in
    place of a lock another process holds) ends with the process within the bound."""
    stuck = (
        "import time\n"
        "from bot.cli import agents\n"
        "agents.INTERRUPTED_EXIT_S = 0.5\n"
        "agents._bound_the_exit()\n"
        "time.sleep(60)\n"
    )
    done = subprocess.run([sys.executable, "-c", stuck], capture_output=True, text=True, timeout=30)
    assert done.returncode == 130, done.stderr
    assert "Interrupted (cleanup cut short)." in done.stderr
