"""Rate limits: a user's burst is capped and refills with time; a flood of distinct senders is
forgotten when idle instead of growing memory without bound, and never frees a limited sender;
the per-chat pacer spaces a chat's sends. Clocks are hand-driven, so nothing here depends on timing.
"""

from __future__ import annotations

import asyncio
import time

from bot.telegram.limits import ChatPacer, Throttle, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_capped_and_refills_at_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(capacity=3, per_minute=6, clock=clock)  # one token every 10 s
    assert [bucket.take(7) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(8)  # another user has a bucket of their own
    clock.now += 9
    assert not bucket.take(7)
    clock.now += 1
    assert bucket.take(7) and not bucket.take(7)
    clock.now += 3600
    assert [bucket.take(7) for _ in range(4)] == [True, True, True, False]  # never above capacity


def test_capacity_zero_turns_the_limit_off() -> None:
    bucket = TokenBucket(capacity=0, per_minute=0)
    assert all(bucket.take(7) for _ in range(100))


def test_a_flood_of_senders_is_forgotten_but_a_limited_one_stays_limited() -> None:
    clock = Clock()
    bucket = TokenBucket(capacity=1, per_minute=1, clock=clock)
    assert bucket.take(1) and not bucket.take(1)  # sender 1 is limited now
    clock.now += 3601
    assert bucket.take(1) and not bucket.take(1)  # refilled an hour later, limited again
    for key in range(2, 10_003):  # a flood of one-message strangers
        bucket.take(key)
    clock.now += 3601
    bucket.take(99_999)  # the next message prunes everyone idle for an hour
    assert len(bucket._state) < 100
    clock.now += 1
    bucket.take(5)
    assert not bucket.take(99_999)  # pruning did not hand the recent sender a fresh bucket


def test_throttle_allows_once_per_interval_per_key_and_stays_bounded() -> None:
    clock = Clock()
    throttle = Throttle(60, clock=clock)
    assert throttle.allow(("refusal", 1)) and not throttle.allow(("refusal", 1))
    assert throttle.allow(("refusal", 2))
    clock.now += 60
    assert throttle.allow(("refusal", 1))
    for key in range(10_001):
        throttle.allow(key)
    clock.now += 61
    assert throttle.allow("after the flood") and len(throttle._last) < 100
    assert not throttle.allow("after the flood")


def test_the_pacer_spaces_the_sends_of_a_chat() -> None:
    async def run() -> tuple[float, float]:
        pacer = ChatPacer(0.2)
        lock = await pacer.wait(2)
        pacer.sent(2)
        sent_at = time.monotonic()
        lock.release()
        lock = await pacer.wait(2)  # chat 2's next send waits for the interval to pass
        gap = time.monotonic() - sent_at
        lock.release()
        return gap, pacer.interval_s

    gap, interval = asyncio.run(run())
    assert gap >= interval - 0.01  # (monotonic and the event loop's clock may differ by a tick)
