"""Scenario 8c (root only): the daemon restarts while its disk is full.

The data directory is on a 96 MB tmpfs. A person's messages are answered and stored; the daemon
is then SIGKILLed (a crash, a reboot) or stopped cleanly (systemd restarting it: the clean stop
removes SQLite's WAL and WAL index, which the next open must create again), before or after the
filesystem is filled to the last byte; a message arrives while it is down, and ``familiar run``
starts again with no free space. Then:

- the daemon comes up and stays up (no lock file, WAL index or index save may stop it);
- the sender hears that the message could not be stored, the admins are told, naming the disk;
- once space returns it recovers by itself: every message sent meanwhile answered, once each;
- nothing stored before the restart is lost, ``integrity_check`` ok, and the FAISS index saved
  at the last clean stop agrees with SQLite.
"""

from __future__ import annotations

import random
import signal
import time

from bench.fault_scenarios.harness import (
    ANN,
    ANSWER_MARK,
    BOB,
    Context,
    Trial,
    bot_texts,
    came_up,
    check_store,
    connected,
    fill,
    kill_if_running,
    tmpfs_daemon,
    umount,
    wait_until,
)

STORED = "SELECT id, role, text FROM messages ORDER BY id"


def restart_full(ctx: Context, trial: Trial, rng: random.Random, n: int) -> None:
    token, _, mnt, run = tmpfs_daemon(ctx, n, "restartfull")
    filler = mnt / "filler"
    em = ctx.emulator

    def answered(tag: str) -> int:
        return sum(tag in t and ANSWER_MARK in t for t in bot_texts(em, token, BOB))

    run.start()
    try:
        if not came_up(run, trial):
            return
        before = [f"rf{n}b{i}q{rng.randrange(10**6)}" for i in range(rng.randint(1, 3))]
        for tag in before:
            em.say(token, BOB, f"before the restart {tag}")
        wait_until(lambda: all(answered(t) for t in before), 60)
        # The model loaded and the index built: a clean stop on a full disk must save it or
        # leave the last one saved, never half a file.
        wait_until(lambda: "memory ready" in run.log_text(), 120)
        stored = set(run.query(STORED))
        how = rng.choice([signal.SIGKILL, signal.SIGTERM])
        full_first = rng.random() < 0.5  # the disk fills under the running daemon, then it stops
        admin_before = len(bot_texts(em, token, ANN))
        if full_first:
            fill(filler)
            time.sleep(rng.uniform(0.0, 5.0))
            run.stop(how)
        else:
            run.stop(how)
            fill(filler)
        tags = [f"rf{n}d{i}q{rng.randrange(10**6)}" for i in range(2)]
        em.say(token, BOB, f"while it was down {tags[0]}")
        bob_before = len(bot_texts(em, token, BOB))
        since = len(run.log_text())
        run.start()
        up = wait_until(lambda: connected(run, since) or run.proc.poll() is not None, 90)  # type: ignore[union-attr]
        if not up or not connected(run, since):
            trial.recovered = False
            code = run.proc.poll() if run.proc is not None else None
            trial.fail(f"restarted on a full disk ({how.name}), it never connected (exit {code})")
            return
        em.say(token, BOB, f"while the disk is full {tags[1]}")
        if not wait_until(lambda: len(bot_texts(em, token, BOB)) > bob_before, 60):
            trial.lost += 1
            trial.fail("the sender heard nothing while the disk was full")
        told = wait_until(
            lambda: any(
                "full" in t.lower() and "failing" in t.lower()
                for t in bot_texts(em, token, ANN)[admin_before:]
            ),
            60,
        )
        if not told:
            trial.recovered = False
            trial.fail("no admin alert naming the full disk")
        time.sleep(rng.uniform(0.0, 8.0))
        if run.proc is not None and run.proc.poll() is not None:
            trial.recovered = False
            trial.fail(f"the daemon stopped on the full disk (exit {run.proc.returncode})")
            return
        alerts = len(bot_texts(em, token, ANN)[admin_before:])
        filler.unlink()
        healed = time.monotonic()
        if not wait_until(lambda: all(answered(t) for t in tags), 120, 0.3):
            trial.recovered = False
        trial.recovery_s = time.monotonic() - healed
        for tag in tags:
            got = answered(tag)
            if got == 0:
                trial.lost += 1
                trial.fail(f"{tag}, sent while the disk was full, never answered")
            elif got > 1:
                trial.twice += 1
                trial.fail(f"{tag} answered {got} times")
        if alerts != 1:  # one per daemon run: the first one may have told them already
            trial.notes.append(f"{alerts} admin alerts while full")
        wait_until(lambda: "memory ready" in run.log_text()[since:], 120)  # then it saves
        run.stop(signal.SIGTERM)
        gone = stored - set(run.query(STORED))
        if gone:
            trial.rows_lost += len(gone)
            trial.fail(f"{len(gone)} stored messages gone after the restart ({how.name})")
        trial.notes.append(f"{how.name} {'after' if full_first else 'before'} the disk filled")
        check_store(trial, run.data_dir, index=True)
    finally:
        kill_if_running(run)
        umount(mnt)
