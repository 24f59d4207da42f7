"""Scenario 7: the Telegram API cut off (a TCP proxy that closes) while people keep writing."""

from __future__ import annotations

import os
import random
import signal
import socket
import threading
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
    stub_answers,
    wait_until,
)
from tests.telegram.conftest import DaemonRun, free_port


class CutProxy:
    """A TCP proxy on 127.0.0.1 that can be cut (listener closed, connections reset) and restored."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.port = free_port()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        if listener is not None:
            listener.close()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def telegram_down(ctx: Context, trial: Trial, rng: random.Random, n: int) -> None:
    token = f"{os.getpid()}{n}:faults-down"
    data = ctx.work / f"down-{n}" / "data"
    stub_answers(ctx.stub, words=rng.choice([10, 80]), chunk_delay_s=0.01)
    proxy = CutProxy(ctx.emulator.port)
    env = daemon_env(data, token, f"http://127.0.0.1:{proxy.port}/bot", ctx.stub)
    run = DaemonRun(data, env).start()
    try:
        if not came_up(run, trial):
            return
        tags = [f"d{n}m{i}q{rng.randrange(10**6)}" for i in range(rng.randint(3, 6))]
        outage = rng.uniform(2.0, ctx.outage_s)
        cut_after = rng.randrange(len(tags))
        for i, tag in enumerate(tags):
            if i == cut_after:
                time.sleep(rng.uniform(0.0, 1.0))
                proxy.cut()
                cut_at = time.monotonic()
            ctx.emulator.say(token, ANN, f"note {i}: {tag}")
            time.sleep(rng.uniform(0.0, 0.5))
        time.sleep(max(0.0, cut_at + outage - time.monotonic()))
        proxy.restore()
        restored = time.monotonic()

        def done() -> bool:
            texts = bot_texts(ctx.emulator, token, ANN)
            return all(any(tag in t for t in texts) for tag in tags)

        trial.recovered = wait_until(done, 180, 0.3)
        trial.recovery_s = time.monotonic() - restored
        time.sleep(1.0)
        texts = bot_texts(ctx.emulator, token, ANN)
        order = []
        for tag in tags:
            hits = [i for i, t in enumerate(texts) if tag in t and "interrupted" not in t.lower()]
            if not hits:
                trial.lost += 1
                trial.fail(f"no answer to {tag} (outage {outage:.0f} s)")
            elif len(hits) > 1:
                trial.twice += 1
                trial.fail(f"{len(hits)} answers to {tag}: {[texts[i][:60] for i in hits]}")
            else:
                order.append(hits[0])
        if order != sorted(order):
            trial.out_of_order += 1
            trial.fail(f"answers out of order: {order}")
        run.stop(signal.SIGTERM)
        check_store(trial, data)
    finally:
        proxy.cut()
        kill_if_running(run)
