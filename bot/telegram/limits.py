"""Rate limits: a token bucket per user for incoming messages, and pacing per chat for outgoing ones.

PTB's ``AIORateLimiter`` keeps the bot under Telegram's global and per-group limits; Telegram
also asks for about one message a second per chat, which it does not enforce for private chats,
so ``ChatPacer`` spaces the sends of each chat itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class TokenBucket:
    """``capacity`` messages at once, refilled at ``per_minute``; one bucket per key."""

    def __init__(
        self, capacity: float, per_minute: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.capacity = capacity
        self.rate = per_minute / 60.0
        self.clock = clock
        self._state: dict[int, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: int) -> bool:
        """Spend one token; False when the key is over its limit."""
        if self.capacity <= 0:
            return True  # disabled
        now = self.clock()
        tokens, at = self._state.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - at) * self.rate)
        if len(self._state) > 10_000:  # forget idle keys rather than grow without bound
            self._state = {k: v for k, v in self._state.items() if now - v[1] < 3600}
        if tokens < 1:
            self._state[key] = (tokens, now)
            return False
        self._state[key] = (tokens - 1, now)
        return True


class ChatPacer:
    """At most one send per ``interval_s`` per chat; callers wait their turn in order."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._locks: dict[int, asyncio.Lock] = {}
        self._last: dict[int, float] = {}

    async def wait(self, chat_id: int) -> asyncio.Lock:
        """Returns the chat's lock, held; release it once the message is sent."""
        lock = self._locks.setdefault(chat_id, asyncio.Lock())
        await lock.acquire()
        delay = self._last.get(chat_id, 0.0) + self.interval_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        return lock

    def sent(self, chat_id: int) -> None:
        self._last[chat_id] = time.monotonic()
        if len(self._last) > 10_000:
            cutoff = time.monotonic() - 60
            self._last = {k: v for k, v in self._last.items() if v > cutoff}
            self._locks = {k: v for k, v in self._locks.items() if k in self._last or v.locked()}


class Throttle:
    """Remembers when something last happened per key, for 'at most once per interval' notices."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self._last: dict[object, float] = {}

    def allow(self, key: object) -> bool:
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            return False
        if len(self._last) > 10_000:
            self._last = {k: v for k, v in self._last.items() if now - v < self.interval_s}
        self._last[key] = now
        return True
