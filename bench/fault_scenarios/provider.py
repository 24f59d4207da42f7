"""Scenario 6: the model provider drops streams, answers 529, or hangs past the deadline."""

from __future__ import annotations

import os
import random
import signal
import time
from typing import Any

from bench.fault_scenarios.harness import (
    ANN,
    ANSWER_MARK,
    Context,
    Trial,
    bot_texts,
    came_up,
    daemon_env,
    kill_if_running,
    wait_until,
)
from tests.stubs.anthropic_stub import LLMStub
from tests.stubs.anthropic_stub import Reply as StubReply
from tests.telegram.conftest import DaemonRun


def provider(ctx: Context, trial: Trial, rng: random.Random, n: int) -> None:
    token = f"{os.getpid()}{n}:faults-llm"
    data = ctx.work / f"llm-{n}" / "data"
    fault = rng.choice(["stream_error", "529", "hang"])
    fault_until = [0.0]

    def respond(path: str, body: dict[str, Any]) -> StubReply:
        reply = LLMStub._default(path, body)
        if time.monotonic() < fault_until[0]:
            if fault == "stream_error":
                return StubReply(reply.text + " partial words", fault="stream_error")
            if fault == "529":
                return StubReply.error(529, retry_after=1, message="Overloaded")
            return StubReply(reply.text, delay_s=120)
        return reply

    ctx.stub.responder = respond
    env = daemon_env(data, token, ctx.emulator.base_url, ctx.stub)
    env.update(
        {
            "FAMILIAR_LLM__REQUEST_TIMEOUT_S": "10",
            "FAMILIAR_LLM__ANSWER_DEADLINE_S": "30",
            "FAMILIAR_LLM__BREAKER_RESET_S": "5",
        }
    )
    run = DaemonRun(data, env).start()
    try:
        if not came_up(run, trial):
            return
        bound = (
            45.0  # the answer's deadline (30 s) and some slack: every message hears back by then
        )
        fault_until[0] = time.monotonic() + rng.uniform(5.0, 20.0)
        sent: dict[str, float] = {}
        for i in range(rng.randint(2, 4)):
            tag = f"p{n}m{i}q{rng.randrange(10**6)}"
            ctx.emulator.say(token, ANN, f"question {tag}")
            sent[tag] = time.monotonic()
            time.sleep(rng.uniform(0.5, 3.0))

        def heard_back(since: int) -> bool:
            return len(ctx.emulator.bot_messages(token, ANN)) >= since

        if not wait_until(lambda: heard_back(len(sent)), bound, 0.3):
            trial.lost += len(sent) - len(ctx.emulator.bot_messages(token, ANN))
            trial.fail(f"{fault}: not every message heard back within {bound:.0f} s")
        wait_until(lambda: time.monotonic() > fault_until[0], 60)
        time.sleep(2.0)
        probe = f"p{n}after{rng.randrange(10**6)}"
        recovered_at = time.monotonic()
        ctx.emulator.say(token, ANN, f"question {probe}")
        trial.recovered = wait_until(
            lambda: any(
                probe in t and ANSWER_MARK in t for t in bot_texts(ctx.emulator, token, ANN)
            ),
            90,
            0.3,
        )
        trial.recovery_s = time.monotonic() - recovered_at
        if not trial.recovered:
            trial.fail(f"{fault}: no real answer once the provider was well again")
        run.stop(signal.SIGTERM)
        pending = run.query("SELECT count(*) FROM inbox WHERE state = 'pending'")[0][0]
        if pending:
            trial.lost += pending
            trial.fail(f"{pending} updates left pending")
    finally:
        kill_if_running(run)
