"""Scenario 8b (root only): the disk fills between storing a person's message and answering it.

The data directory is on a 96 MB tmpfs. A person writes; when the model stub receives the
question (the message and its turn are stored by then: the model is asked only after), the
harness fills the filesystem to the last byte, and only then does the stub answer (a short or a
long streamed answer). Space returns after a random spell. Then:

- the sender got the answer or a clear sentence while the disk was full;
- the daemon stayed up;
- the person's turn is stored once, and the answer is stored once space returned (the message
  answered again then is allowed, as long as a second complete answer is not sent unmarked);
- nothing is left pending in the inbox, a later message is answered, ``integrity_check`` ok.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from typing import Any

from bench.fault_scenarios.harness import (
    ANSWER_MARK,
    BOB,
    Context,
    Trial,
    bot_texts,
    came_up,
    check_store,
    fill,
    kill_if_running,
    tmpfs_daemon,
    umount,
    wait_until,
)
from tests.stubs.anthropic_stub import LLMStub
from tests.stubs.anthropic_stub import Reply as StubReply


def _last_user_text(body: dict[str, Any]) -> str:
    for m in reversed(body.get("messages", [])):
        if m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, list):
                return " ".join(b.get("text", "") for b in c if isinstance(b, dict))
            return str(c)
    return ""


def full_mid_answer(ctx: Context, trial: Trial, rng: random.Random, n: int) -> None:
    token, _, mnt, run = tmpfs_daemon(ctx, n, "midfull")
    data = run.data_dir
    tag = f"mf{n}q{rng.randrange(10**6)}"
    words = rng.choice([5, 150])
    asked = threading.Event()
    filled = threading.Event()

    def respond(path: str, body: dict[str, Any]) -> StubReply:
        reply = LLMStub._default(path, body)
        if reply.json is None and tag in _last_user_text(body) and not asked.is_set():
            asked.set()
            filled.wait(60)
        if reply.json is not None:
            return reply
        return StubReply(reply.text + " " + " ".join(["more"] * words), chunk_delay_s=0.01)

    ctx.stub.responder = respond
    run.start()
    filler = mnt / "filler"
    try:
        if not came_up(run, trial):
            return
        ctx.emulator.say(token, BOB, "hello before the disk fills")
        wait_until(lambda: any(ANSWER_MARK in t for t in bot_texts(ctx.emulator, token, BOB)), 60)
        bob_before = len(bot_texts(ctx.emulator, token, BOB))
        ctx.emulator.say(token, BOB, f"question {tag}")
        if not asked.wait(60):
            trial.recovered = False
            trial.fail("the model was never asked")
            return
        stored_turns = run.query(
            "SELECT count(*) FROM messages WHERE role = 'user' AND text LIKE ?", f"%{tag}%"
        )[0][0]
        fill(filler)
        filled.set()

        def complete(t: str) -> bool:
            return ANSWER_MARK in t and tag in t and t.split().count("more") == words

        if not wait_until(lambda: len(bot_texts(ctx.emulator, token, BOB)) > bob_before, 90):
            trial.lost += 1
            trial.fail("the sender heard nothing while the disk was full")
        time.sleep(rng.uniform(1.0, 15.0))
        if run.proc is not None and run.proc.poll() is not None:
            trial.recovered = False
            trial.fail(f"the daemon stopped (exit {run.proc.returncode})")
            return
        heard = [t[:80] for t in bot_texts(ctx.emulator, token, BOB)[bob_before:]]
        filler.unlink()
        healed = time.monotonic()
        answer_rows = (
            "SELECT count(*) FROM messages WHERE role = 'assistant' AND text LIKE ? AND text LIKE ?"
        )

        def answer_stored() -> bool:
            return run.query(answer_rows, f"%{ANSWER_MARK}%", f"%{tag}%")[0][0] >= 1

        if not wait_until(answer_stored, 120, 0.5):
            trial.rows_lost += 1
            trial.fail(f"the answer was never stored once space returned (heard: {heard})")
        probe = f"mf{n}after{rng.randrange(10**6)}"
        ctx.emulator.say(token, BOB, f"after the fault {probe}")
        trial.recovered = wait_until(
            lambda: any(
                probe in t and ANSWER_MARK in t for t in bot_texts(ctx.emulator, token, BOB)
            ),
            120,
            0.3,
        )
        trial.recovery_s = time.monotonic() - healed
        if not trial.recovered:
            trial.fail("no answer once space returned")
        texts = bot_texts(ctx.emulator, token, BOB)
        answers = [t for t in texts if complete(t)]
        if not answers:
            trial.lost += 1
            trial.fail(f"no complete answer ever sent (heard: {heard})")
        elif len(answers) > 1:
            trial.twice += 1
            trial.fail(f"{len(answers)} complete answers")
        run.stop(signal.SIGTERM)
        turns = run.query(
            "SELECT count(*) FROM messages WHERE role = 'user' AND text LIKE ?", f"%{tag}%"
        )[0][0]
        stored = run.query(answer_rows, f"%{ANSWER_MARK}%", f"%{tag}%")[0][0]
        if turns != 1 or stored > 1:
            trial.twice += turns > 1 or stored > 1
            trial.rows_lost += turns == 0
            trial.fail(f"the turn stored {turns} times, its answer {stored} times")
        pending = run.query("SELECT count(*) FROM inbox WHERE state = 'pending'")[0][0]
        if pending:
            trial.lost += pending
            trial.fail(f"{pending} updates left pending")
        trial.notes.append(f"turn stored when asked: {stored_turns}; heard while full: {heard}")
        check_store(trial, data)
    finally:
        kill_if_running(run)
        umount(mnt)
