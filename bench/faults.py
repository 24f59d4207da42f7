"""Fault campaign: the real daemon killed, starved and cut off at random points, invariants checked.

Each trial runs ``familiar run`` (or a CLI command) as a subprocess against the Telegram emulator
(``tests/telegram/emulator``) and the project's model stub (``tests/stubs/anthropic_stub.py``),
puts one fault at a random point, recovers, and checks what must hold afterwards. The trial's
seed is derived from ``--seed`` and its number, so a violation is reproduced with
``--scenario NAME --seed S --trials N`` (the table prints the seed of the first violation).

This file is the entry point; each scenario is a module of ``bench/fault_scenarios/`` (the
shared harness in ``harness.py``, the trial loop and table in ``campaign.py``). Scenarios:

- ``conversation``: two people send plain messages (long streamed answers), ``/remember`` and
  ``/remind``; SIGKILL at a random moment, restart. Every delivered message answered, none with
  two complete answers, every turn stored once, one fact and one reminder per command, the
  FAISS index agrees with SQLite, ``integrity_check`` ok.
- ``import``: SIGKILL during ``familiar memory import``, then the same import run again. Only
  whole batches behind after the kill, every committed row findable, the rerun completes the set
  with no duplicates, index consistent.
- ``backup``: SIGKILL during ``familiar backup``. No archive under its final name unless it
  verifies; the next backup clears the partials; the last good archive restores (onto a new
  machine: an empty data directory) to identical memory.
- ``telegram_down``: the Telegram API cut off (a TCP proxy between daemon and emulator closes)
  for a random spell while people keep writing; afterwards every message answered once, in order.
- ``provider``: the model provider drops streams mid-answer, answers 529, or hangs past the
  deadline; every message gets a clear sentence within the bound, nothing unanswered, and once
  the provider is well again a message gets a real answer (the breaker recovered).

- ``reminder``: SIGKILL a few seconds before or after reminders fall due, restart: each one
  delivered, and a second delivery (the kill fell between the send and its record) says so.
- ``agent_task``: SIGKILL a few seconds before or after a scheduled agent task falls due,
  restart: the run answered (a second answer only under a header saying it is sent again), the
  model asked again only when the kill cut its first answer.

- ``disk_full`` (root only: a 96 MB tmpfs holds the data directory, filled to the last byte):
  the daemon stays up, the sender hears back, the admins are told; once space returns it answers
  again by itself, the messages sent meanwhile included, each once; ``integrity_check`` ok. Every
  other trial the disk fills between storing a message and answering it (``full_mid_answer``):
  the sender is told why the answer is late, and it is stored and sent once space returns.
  Every third trial the daemon is killed or stopped and started again on the full disk
  (``restart_full``): it comes up, the sender and the admins hear, nothing stored is lost, and
  it answers what came meanwhile once space returns.
- ``readonly`` (root only): the data directory remounted read-only, or the database file
  replaced under the running daemon: the admins are told, the daemon stays up, and recovers
  once the directory is writable again.

- ``training``: ``familiar train fit`` of the tiny random Llama of tests/training (built here,
  nothing downloaded; 30 steps, a checkpoint every 5) SIGKILLed with its worker at a random step,
  then run again: it resumes from its checkpoint and the adapter is identical, tensor for
  tensor, to an uninterrupted run with the same seed.

    .venv/bin/python bench/faults.py [--trials 5] [--seed 1] [--scenario conversation ...]

Exits 1 on any violation. Needs node and npm (the emulator) and the bundled MiniLM.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.fault_scenarios.campaign import main  # noqa: E402

if __name__ == "__main__":
    main(__doc__.split("\n\n")[0] if __doc__ else "")
