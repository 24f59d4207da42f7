"""Scenario 5b: SIGKILL a few seconds before or after a scheduled agent task falls due.

A person asks for a daily task in conversation (the stub calls ``schedule_task`` with a cron
time at the next minute boundary at least ``LEAD_S`` away); the model takes 3 s to start the
run's answer and streams it for a few seconds more; the daemon is SIGKILLed at a random moment from 3 s before the due time to 8 s after it
(before the run, while its header is sent, while the answer streams, after it), and restarted
after up to 3 s. Then:

- the run is delivered: one complete answer to the task's prompt (a streamed answer cut by the
  kill stays incomplete and does not count);
- a second complete answer comes only under a header saying it is sent again;
- the model is asked at most twice for the run (once more only when the kill cut the first
  answer), and never again once an answer was complete;
- ``integrity_check`` ok, and nothing of the run left marked as running.

Catch-up runs are staggered by 2 s here (``FAMILIAR_JOBS__CATCH_UP_STAGGER_S``; 20 s by default)
to keep a trial near a minute.
"""

from __future__ import annotations

import os
import random
import signal
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.fault_scenarios.harness import (
    ANN,
    ANSWER_MARK,
    Context,
    Trial,
    bot_texts,
    came_up,
    check_store,
    daemon_env,
    kill_if_running,
    wait_until,
)
from tests.stubs.anthropic_stub import LLMStub
from tests.stubs.anthropic_stub import Reply as StubReply
from tests.telegram.conftest import DaemonRun

LEAD_S = 12.0  # the task falls due at least this long after it is asked for
HEADER = "🗓 Task #"


def _asks_for(body: Any, tag: str) -> bool:
    """Whether a model call's last user turn is the task's prompt (not the scheduling
    conversation, whose tool result also names it, nor a JSON-schema call such as fact
    extraction)."""
    if not isinstance(body, dict) or body.get("output_config"):
        return False
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    if not users:
        return False
    content = users[-1].get("content")
    if isinstance(content, list):
        content = " ".join(b.get("text", "") for b in content if b.get("type") == "text")
    return tag in str(content)


def _asks(bodies: list[Any], tag: str) -> int:
    return sum(_asks_for(body, tag) for body in bodies)


def agent_task(ctx: Context, trial: Trial, rng: random.Random, n: int) -> None:
    token = f"{os.getpid()}{n}:faults-task"
    data = ctx.work / f"task-{n}" / "data"
    words = 150
    tag = f"k{n}q{rng.randrange(10**6)}"
    prompt = f"say the word {tag}"

    def respond(path: str, body: dict[str, Any]) -> StubReply:
        reply = LLMStub._default(path, body)
        if reply.json is not None:
            return reply
        text = reply.text + " " + " ".join(["more"] * words)
        if _asks_for(body, tag):  # the run: a kill in it is as likely as one around it
            return StubReply(text, delay_s=3.0, chunk_delay_s=0.01)
        return StubReply(text)

    ctx.stub.responder = respond
    env = daemon_env(data, token, ctx.emulator.base_url, ctx.stub)
    env["FAMILIAR_JOBS__CATCH_UP_STAGGER_S"] = "2"
    run = DaemonRun(data, env).start()
    try:
        if not came_up(run, trial):
            return
        now = datetime.now(UTC)
        due = (now + timedelta(seconds=LEAD_S + 60)).replace(second=0, microsecond=0)
        ctx.stub.script(
            StubReply.searched(
                "schedule_task", cron=f"{due.minute} {due.hour} * * *", prompt=prompt
            ),
            StubReply("Scheduled."),
        )
        ctx.emulator.say(token, ANN, f"every day at {due:%H:%M}, task number {n}")
        if not wait_until(lambda: "Scheduled." in bot_texts(ctx.emulator, token, ANN), 60):
            trial.recovered = False
            trial.fail("the task was not scheduled")
            return
        asked_before = len(ctx.stub.requests)
        kill_at = due.timestamp() + rng.uniform(-3.0, 8.0)
        time.sleep(max(0.0, kill_at - time.time()))
        run.stop(signal.SIGKILL)
        killed = time.time() - due.timestamp()
        time.sleep(rng.uniform(0.0, 3.0))
        restarted = time.monotonic()
        run = DaemonRun(data, env).start()

        def complete(t: str) -> bool:
            return ANSWER_MARK in t and tag in t and t.split().count("more") == words

        def answers() -> list[str]:
            return [t for t in bot_texts(ctx.emulator, token, ANN) if complete(t)]

        trial.recovered = wait_until(lambda: bool(answers()), 120, 0.3)
        trial.recovery_s = time.monotonic() - restarted
        time.sleep(3.0)  # let a late second run, if any, arrive
        texts = bot_texts(ctx.emulator, token, ANN)
        headers = [t for t in texts if t.startswith(HEADER)]
        got = answers()
        asks = _asks([r.body for r in ctx.stub.requests[asked_before:]], tag)
        where = f"killed {killed:+.1f} s from due, {len(headers)} headers, {asks} model calls"
        if not got:
            trial.lost += 1
            trial.fail(f"the task's run was never answered ({where})")
        if len(got) > 1 and not all("again" in h.lower() for h in headers[1:]):
            trial.twice += 1
            trial.fail(f"{len(got)} complete answers, a repeat not marked ({where}): {headers}")
        if asks > 2 or asks > len(headers):
            trial.twice += 1
            trial.fail(f"the model was asked {asks} times for one run ({where})")
        elif asks == 2 and len(got) > 1:
            trial.twice += 1
            trial.fail(f"asked again after a complete answer ({where})")
        if trial.ok:
            trial.notes.append(where)
        run.stop(signal.SIGTERM)
        unended = run.query(
            "SELECT count(*) FROM agent_tasks WHERE last_run_at IS NULL OR running_at IS NOT NULL"
        )[0][0]
        if unended:
            trial.lost += 1
            trial.fail("the task's run is not recorded as run and ended")
        check_store(trial, data)
    finally:
        kill_if_running(run)
