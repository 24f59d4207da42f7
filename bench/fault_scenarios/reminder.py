"""Scenario 5a: SIGKILL a few seconds before or after reminders fall due, restart."""

from __future__ import annotations

import os
import random
import signal
import time

from bench.fault_scenarios.harness import (
    ANN,
    Context,
    Trial,
    bot_texts,
    came_up,
    check_store,
    daemon_env,
    kill_if_running,
    wait_until,
)
from tests.telegram.conftest import DaemonRun


def reminder(ctx: Context, trial: Trial, rng: random.Random, n: int) -> None:
    token = f"{os.getpid()}{n}:faults-remind"
    data = ctx.work / f"remind-{n}" / "data"
    env = daemon_env(data, token, ctx.emulator.base_url, ctx.stub)
    run = DaemonRun(data, env).start()
    try:
        if not came_up(run, trial):
            return
        due = {
            f"r{n}m{i}q{rng.randrange(10**6)}": rng.randint(4, 10) for i in range(rng.randint(1, 4))
        }
        sent = time.monotonic()
        for tag, seconds in due.items():
            ctx.emulator.say(token, ANN, f"/remind in {seconds}s ping {tag}")

        def confirmations() -> int:
            return sum("remind you" in t for t in bot_texts(ctx.emulator, token, ANN))

        if not wait_until(lambda: confirmations() >= len(due), 60):
            trial.fail("not every /remind was confirmed before the kill")
        kill_at = min(due.values()) + rng.uniform(-2.0, 4.0)
        time.sleep(max(0.0, sent + kill_at - time.monotonic()))
        run.stop(signal.SIGKILL)
        time.sleep(rng.uniform(0.0, 3.0))
        restarted = time.monotonic()
        run = DaemonRun(data, env).start()

        def deliveries(tag: str) -> list[str]:
            return [
                t for t in bot_texts(ctx.emulator, token, ANN) if tag in t and "remind you" not in t
            ]

        trial.recovered = wait_until(lambda: all(deliveries(tag) for tag in due), 120, 0.3)
        trial.recovery_s = time.monotonic() - restarted
        time.sleep(2.0)
        for tag in due:
            got = deliveries(tag)
            if not got:
                trial.lost += 1
                trial.fail(f"reminder {tag} never delivered")
            # At least once; a second delivery must say it may be a repeat.
            unmarked = [t for t in got[1:] if "again" not in t.lower()]
            if unmarked:
                trial.twice += 1
                trial.fail(f"reminder {tag} delivered {len(got)} times: {got}")
        run.stop(signal.SIGTERM)
        active = run.query("SELECT count(*) FROM reminders WHERE active = 1")[0][0]
        if active:
            trial.fail(f"{active} delivered one-shot reminders still active")
            trial.twice += active
        check_store(trial, data)
    finally:
        kill_if_running(run)
