"""The campaign: scenarios by name, the trial loop, the table and the command line.

Each scenario is a function ``(ctx, trial, rng, n)`` in a module of its own; it puts one fault at
a point ``rng`` picks, recovers, and records on ``trial`` what it found. The trial's seed is
derived from ``--seed`` and its number, so a violation is reproduced with
``--scenario NAME --seed S --trials N`` (the table prints the seed of the first violation).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.fault_scenarios.agent_task import agent_task
from bench.fault_scenarios.backup import backup_kill
from bench.fault_scenarios.bulk_import import import_kill
from bench.fault_scenarios.conversation import conversation
from bench.fault_scenarios.harness import Context, Trial, start_emulator
from bench.fault_scenarios.provider import provider
from bench.fault_scenarios.reminder import reminder
from bench.fault_scenarios.storage import disk_full, readonly
from bench.fault_scenarios.telegram_down import telegram_down
from bench.fault_scenarios.training import training_kill
from tests.stubs.anthropic_stub import llm_stub
from tests.telegram.conftest import stop_emulator

SCENARIOS: dict[str, Callable[[Context, Trial, random.Random, int], None]] = {
    "conversation": conversation,
    "import": import_kill,
    "backup": backup_kill,
    "telegram_down": telegram_down,
    "provider": provider,
    "reminder": reminder,
    "agent_task": agent_task,
    "training": training_kill,
    "disk_full": disk_full,
    "readonly": readonly,
}


def run_campaign(names: list[str], trials: int, seed: int, verbose: bool, outage_s: float) -> int:
    emulator = start_emulator()
    rows = []
    violations = 0
    try:
        with llm_stub() as stub, tempfile.TemporaryDirectory(prefix="fam-faults-") as tmp:
            ctx = Context(emulator, stub, Path(tmp), verbose, outage_s)
            for name in names:
                results: list[Trial] = []
                for n in range(trials):
                    trial_seed = seed * 1000 + n
                    trial = Trial(trial_seed)
                    try:
                        SCENARIOS[name](ctx, trial, random.Random(f"{name}:{trial_seed}"), n)
                    except Exception as exc:  # a harness failure is a failed trial, not a crash
                        trial.recovered = False
                        trial.fail(f"harness: {type(exc).__name__}: {exc}")
                    ctx.stub.responder = None
                    results.append(trial)
                    mark = "ok" if trial.ok else "VIOLATION"
                    print(
                        f"  {name} trial {n} (seed {trial_seed}): {mark} "
                        f"{trial.recovery_s:.1f} s {'; '.join(trial.notes)[:300]}",
                        file=sys.stderr,
                        flush=True,
                    )
                bad = [t for t in results if not t.ok]
                violations += len(bad)
                rows.append(
                    (
                        name,
                        len(results),
                        sum(t.recovered for t in results),
                        sum(t.lost for t in results),
                        sum(t.twice for t in results),
                        sum(t.rows_lost for t in results),
                        sum(t.corrupt for t in results),
                        max((t.recovery_s for t in results), default=0.0),
                        bad[0].seed if bad else None,
                    )
                )
    finally:
        stop_emulator(emulator)
    header = "| scenario | trials | recovered | messages lost | answered twice | rows lost | corruption | worst recovery | first bad seed |"
    print(header)
    print("|" + "---|" * 9)
    for name, t, rec, lost, twice, rows_lost, corrupt, worst, bad_seed in rows:
        print(
            f"| {name} | {t} | {rec} | {lost} | {twice} | {rows_lost} | {corrupt} | {worst:.1f} s | "
            f"{'-' if bad_seed is None else bad_seed} |"
        )
    return 1 if violations else 0


def main(description: str) -> None:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    parser.add_argument("--outage", type=float, default=60.0, help="longest Telegram outage, s")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    names = args.scenario or list(SCENARIOS)
    outage = max(2.0, args.outage)
    sys.exit(run_campaign(names, args.trials, args.seed, args.verbose, outage))
