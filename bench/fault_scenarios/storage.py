"""Scenarios 8 and 9: the data directory fills up, turns read-only, or its database is replaced."""

from __future__ import annotations

import os
import random
import shutil
import signal
import time

from bench.fault_scenarios.full_mid_answer import full_mid_answer
from bench.fault_scenarios.harness import (
    ANN,
    ANSWER_MARK,
    BOB,
    Context,
    Trial,
    bot_texts,
    came_up,
    can_mount,
    check_store,
    fill,
    kill_if_running,
    mount,
    tmpfs_daemon,
    umount,
    wait_until,
)
from bench.fault_scenarios.restart_full import restart_full


def admin_heard(ctx: Context, token: str, since: int, words: tuple[str, ...]) -> bool:
    texts = bot_texts(ctx.emulator, token, ANN)[since:]
    return any(any(w in t.lower() for w in words) for t in texts)


def storage_fault(ctx: Context, trial: Trial, rng: random.Random, n: int, fault: str) -> None:
    token, _, mnt, run = tmpfs_daemon(ctx, n, fault)
    data = run.data_dir
    run.start()
    filler = mnt / "filler"
    try:
        if not came_up(run, trial):
            return
        ctx.emulator.say(token, BOB, f"hello before {fault}")
        wait_until(lambda: any(ANSWER_MARK in t for t in bot_texts(ctx.emulator, token, BOB)), 60)
        admin_before = len(bot_texts(ctx.emulator, token, ANN))
        bob_before = len(bot_texts(ctx.emulator, token, BOB))
        if fault == "disk_full":
            fill(filler)
            words: tuple[str, ...] = ("disk", "space", "full", "failing", "store")
        elif fault == "readonly":
            mount("--bind", str(data), str(data))
            mount("-o", "remount,ro,bind", str(data))
            words = ("read-only", "read only", "failing", "write", "store")
        else:  # the database file replaced under the running daemon
            copy = data / "familiar.db.copy"
            shutil.copyfile(data / "familiar.db", copy)
            os.replace(copy, data / "familiar.db")
            words = ("replaced", "database", "failing")
        faulted = time.monotonic()
        tags = [f"{fault[:2]}{n}m{i}q{rng.randrange(10**6)}" for i in range(2)]
        for tag in tags:
            ctx.emulator.say(token, BOB, f"during the fault {tag}")
        if not wait_until(lambda: len(bot_texts(ctx.emulator, token, BOB)) >= bob_before + 1, 90):
            trial.lost += 1
            trial.fail(f"{fault}: the sender heard nothing while the fault lasted")
        if not wait_until(lambda: admin_heard(ctx, token, admin_before, words), 120):
            trial.fail(f"{fault}: no admin alert")
            trial.recovered = False
        if run.proc is not None and run.proc.poll() is not None:
            trial.recovered = False
            trial.fail(f"{fault}: the daemon stopped (exit {run.proc.returncode})")
            return
        # The fault ends; the daemon must recover by itself.
        if fault == "disk_full":
            filler.unlink()
        elif fault == "readonly":
            umount(data)
        healed = time.monotonic()
        probe = f"after{n}q{rng.randrange(10**6)}"
        ctx.emulator.say(token, BOB, f"after the fault {probe}")
        ok = wait_until(
            lambda: any(
                probe in t and ANSWER_MARK in t for t in bot_texts(ctx.emulator, token, BOB)
            ),
            120,
            0.3,
        )
        trial.recovery_s = time.monotonic() - healed
        if fault == "replaced":
            ok = ok  # a replaced database may need a restart; the alert is what is required
        elif not ok:
            trial.recovered = False
            trial.fail(f"{fault}: no answer once the fault ended")
        else:  # nothing lost: what was sent during the fault is answered after it, once each
            texts = bot_texts(ctx.emulator, token, BOB)
            for tag in tags:
                got = sum(tag in t and ANSWER_MARK in t for t in texts)
                if got == 0:
                    trial.lost += 1
                    trial.fail(f"{fault}: {tag}, sent during the fault, never answered")
                elif got > 1:
                    trial.twice += 1
                    trial.fail(f"{fault}: {tag} answered {got} times")
        del faulted
        run.stop(signal.SIGTERM)
        check_store(trial, data)
    finally:
        kill_if_running(run)
        if fault == "readonly":
            umount(data)
        umount(mnt)


def disk_full(ctx: Context, trial: Trial, rng: random.Random, n: int) -> None:
    if not can_mount():
        trial.notes.append("skipped: needs root to mount a small filesystem")
        return
    if n % 3 == 1:  # the disk fills while a stored message is being answered
        full_mid_answer(ctx, trial, rng, n)
    elif n % 3 == 2:  # the daemon restarts (killed, or stopped cleanly) while the disk is full
        restart_full(ctx, trial, rng, n)
    else:
        storage_fault(ctx, trial, rng, n, "disk_full")


def readonly(ctx: Context, trial: Trial, rng: random.Random, n: int) -> None:
    if not can_mount():
        trial.notes.append("skipped: needs root to mount a filesystem read-only")
        return
    storage_fault(ctx, trial, rng, n, rng.choice(["readonly", "replaced"]))
