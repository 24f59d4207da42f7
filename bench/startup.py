"""Startup benchmark: time from process start to READY=1, and resident memory when idle.

Runs the installed ``familiar run`` N times (default 5) against a fresh data directory each time,
with a terminal on stdin (console channel) or, with --telegram-url, a Telegram base URL, and a
real NOTIFY_SOCKET. Prints the median and every run. Targets: READY in 2 s or less; RSS at READY
(before the embedding model is loaded) under 300 MB.

    .venv/bin/python bench/startup.py [--runs 5] [--settle 10]
"""

from __future__ import annotations

import argparse
import os
import pty
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one_run(familiar: str, settle: float, extra_env: dict[str, str]) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory(prefix="fam-bench-", dir="/tmp") as tmp:
        sock_path = os.path.join(tmp, "n.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(sock_path)
        sock.settimeout(60)
        leader, follower = pty.openpty()
        env = {
            **os.environ,
            "NOTIFY_SOCKET": sock_path,
            "FAMILIAR_DATA_DIR": os.path.join(tmp, "data"),
            **extra_env,
        }
        started = time.monotonic()
        proc = subprocess.Popen(
            [familiar, "run"],
            stdin=follower,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        os.close(follower)
        try:
            while True:
                if b"READY=1" in sock.recv(4096).split(b"\n"):
                    break
            ready = time.monotonic() - started
            at_ready = rss_mb(proc.pid)
            time.sleep(settle)
            settled = rss_mb(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
            os.close(leader)
            sock.close()
    return ready, at_ready, settled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--settle", type=float, default=10.0, help="seconds idle before the second RSS reading"
    )
    parser.add_argument("--familiar", default=str(Path(sys.executable).parent / "familiar"))
    args = parser.parse_args()
    runs = [one_run(args.familiar, args.settle, {}) for _ in range(args.runs)]
    for i, (ready, at_ready, settled) in enumerate(runs, 1):
        print(
            f"run {i}: ready {ready:.3f} s, RSS at ready {at_ready:.0f} MB, after {args.settle:g} s idle {settled:.0f} MB"
        )
    print(
        f"median of {args.runs}: ready {statistics.median(r[0] for r in runs):.3f} s (target <= 2 s), "
        f"RSS at ready {statistics.median(r[1] for r in runs):.0f} MB (target < 300 MB), "
        f"RSS idle {statistics.median(r[2] for r in runs):.0f} MB"
    )


if __name__ == "__main__":
    main()
