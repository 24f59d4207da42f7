"""Whether Telegram answers: the time of the latest Bot API call that got an HTTP answer.

The dispatcher retries an update whose handling failed because Telegram could not be reached (a
connection refused, reset or cut) without counting the try toward the poison limit, since the
update is not at fault while Telegram is away. That is only true while Telegram really is away:
once some call got an answer after this update's previous such failure (polling, another
chat's send), the next connection failure of this update is its own, and counts.

PTB has no hook for "a request got a response, whatever its status", so ``ReachRequest`` wraps
``HTTPXRequest.do_request``, the one place every Bot API call passes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from telegram.request import HTTPXRequest


class TelegramReach:
    """When Telegram last answered a call (any HTTP status: an error answer is an answer)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.last_answer: float | None = None

    def answered(self) -> None:
        self.last_answer = self.clock()

    def answered_since(self, moment: float) -> bool:
        return self.last_answer is not None and self.last_answer > moment


class ReachRequest(HTTPXRequest):
    """PTB's HTTPX request that tells ``reach`` each time Telegram answers."""

    def __init__(self, reach: TelegramReach, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reach = reach

    async def do_request(self, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        answer = await super().do_request(*args, **kwargs)
        self.reach.answered()
        return answer
