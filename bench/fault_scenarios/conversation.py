"""Scenario 1: SIGKILL during a conversation (plain messages, /remember, /remind), restart."""

from __future__ import annotations

import os
import random
import signal
import time

from bench.fault_scenarios.harness import (
    ANN,
    BOB,
    Context,
    Trial,
    bot_texts,
    came_up,
    check_store,
    connected,
    daemon_env,
    kill_if_running,
    stub_answers,
    wait_until,
)
from tests.telegram.conftest import DaemonRun


def conversation(ctx: Context, trial: Trial, rng: random.Random, n: int) -> None:
    token = f"{os.getpid()}{n}:faults-conv"
    data = ctx.work / f"conv-{n}" / "data"
    stub_answers(ctx.stub, words=rng.choice([30, 200, 400]), chunk_delay_s=0.01)
    env = daemon_env(data, token, ctx.emulator.base_url, ctx.stub)
    run = DaemonRun(data, env).start()
    try:
        if not came_up(run, trial):
            return
        plan: list[tuple[float, int, str, str]] = []  # (at, user, kind, tag)
        at = 0.0
        for i in range(rng.randint(3, 7)):
            at += rng.uniform(0.0, 0.6)
            kind = rng.choices(["text", "remember", "remind"], [6, 2, 2])[0]
            plan.append((at, rng.choice([ANN, BOB]), kind, f"t{n}x{i}q{rng.randrange(10**6)}"))
        kill_at = rng.uniform(0.0, at + 1.0)
        began = time.monotonic()
        killed = False
        for when, user, kind, tag in plan:
            if not killed and when >= kill_at:
                time.sleep(max(0.0, began + kill_at - time.monotonic()))
                run.stop(signal.SIGKILL)
                killed = True
            time.sleep(max(0.0, began + when - time.monotonic()))
            text = {
                "text": f"please think about {tag}",
                "remember": f"/remember my code word is {tag}",
                "remind": f"/remind in 3h water the plant {tag}",
            }[kind]
            ctx.emulator.say(token, user, text)
        if not killed:
            time.sleep(max(0.0, began + kill_at - time.monotonic()))
            run.stop(signal.SIGKILL)
        restarted = time.monotonic()
        mark = len(run.log_text())
        run = DaemonRun(data, env).start()

        def answered(user: int, tag: str, kind: str) -> int:
            texts = bot_texts(ctx.emulator, token, user)
            if kind == "text":  # complete answers; one cut by the kill may say it was interrupted
                return sum(1 for t in texts if tag in t and "interrupted" not in t.lower())
            if kind == "remind":
                return sum(1 for t in texts if tag in t)
            return 1  # /remember's reply does not name the fact: its row is checked below

        def all_answered() -> bool:
            if not connected(run, mark):
                return False
            pending = run.query("SELECT count(*) FROM inbox WHERE state = 'pending'")[0][0]
            return pending == 0 and all(
                answered(u, tag, k) >= 1 for _, u, k, tag in plan if k != "remember"
            )

        trial.recovered = wait_until(all_answered, 120, 0.3)
        trial.recovery_s = time.monotonic() - restarted
        time.sleep(1.0)  # let late duplicates, if any, arrive
        # Searchable: every stored row gets its vector once the model is up (it loads in the
        # background after a restart), and the clean stop then saves an index that agrees.
        unembedded = "SELECT count(*) FROM memories WHERE embedding IS NULL"
        if not wait_until(lambda: run.query(unembedded)[0][0] == 0, 180, 0.5):
            trial.rows_lost += run.query(unembedded)[0][0]
            trial.fail("stored rows still have no vector (not searchable)")
        run.stop(signal.SIGTERM)

        for _, user, kind, tag in plan:
            got = answered(user, tag, kind)
            if got == 0:
                trial.lost += 1
                trial.fail(f"no answer to {kind} {tag}")
            elif got > 1:
                trial.twice += 1
                trial.fail(f"{got} complete answers to {kind} {tag}")
            like = f"%{tag}%"
            if kind == "text":
                rows = run.query(
                    "SELECT count(*) FROM messages WHERE role = 'user' AND text LIKE ?", like
                )
            elif (
                kind == "remember"
            ):  # "my code word is B" supersedes "... is A": A stays as history
                rows = run.query(
                    "SELECT count(*) FROM memories WHERE kind = 'fact' AND text LIKE ?", like
                )
            else:
                rows = run.query(
                    "SELECT count(*) FROM reminders WHERE text LIKE ? AND active = 1", like
                )
            stored = rows[0][0]
            if stored == 0:
                trial.rows_lost += 1
                trial.fail(f"{kind} {tag} not stored")
            elif stored > 1:
                trial.twice += 1
                trial.fail(f"{kind} {tag} stored {stored} times")
        check_store(trial, data, index=True)
    finally:
        kill_if_running(run)
