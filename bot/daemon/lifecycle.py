"""Services and their lifecycle: start in dependency order, stop in reverse, within a bound."""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable

from loguru import logger


class Service(ABC):
    """A part of the daemon with a start and a stop. ``start`` must return quickly: slow work
    (loading a model, connecting to a network) goes to a background task."""

    name: str = "service"

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...


class FunctionService(Service):
    def __init__(
        self,
        name: str,
        start: Callable[[], Awaitable[None]] | None = None,
        stop: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.name = name
        self._start, self._stop = start, stop

    async def start(self) -> None:
        if self._start:
            await self._start()

    async def stop(self) -> None:
        if self._stop:
            await self._stop()


class Lifecycle:
    def __init__(self, on_status: Callable[[str], None] = lambda s: None) -> None:
        self.services: list[Service] = []
        self.started: list[Service] = []
        self.on_status = on_status

    def add(self, service: Service) -> Service:
        self.services.append(service)
        return service

    async def start_all(self) -> None:
        for service in self.services:
            self.on_status(f"starting {service.name}")
            began = time.monotonic()
            await service.start()
            self.started.append(service)
            logger.debug("started {} in {:.0f} ms", service.name, (time.monotonic() - began) * 1000)

    async def stop_all(self, timeout_s: float) -> bool:
        """Stop what was started, newest first. Returns False when the bound was exceeded."""
        deadline = time.monotonic() + timeout_s
        clean = True
        while self.started:
            service = self.started.pop()
            left = max(deadline - time.monotonic(), 0.1)
            self.on_status(f"stopping {service.name}")
            try:
                await asyncio.wait_for(service.stop(), left)
            except TimeoutError:
                logger.error("{} did not stop in time; cutting it short", service.name)
                clean = False
            except Exception:
                logger.exception("{} failed while stopping", service.name)
                clean = False
        return clean
