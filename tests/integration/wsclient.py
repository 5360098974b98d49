"""A raw seapig-protocol websocket client for tests: send frames, wait for frames that match."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any, Callable

import orjson
from websockets.asyncio.client import connect


class RawClient:
    """Speaks raw JSON frames, like seapig's own RSpec client; keeps every frame it receives."""

    def __init__(self, url: str, name: str = "test", **options: Any) -> None:
        self.url = url
        self.name = name
        self.options = {"name": name, **options}
        self.frames: list[dict] = []
        self._ws = None
        self._reader: asyncio.Task | None = None
        self._arrived = asyncio.Event()

    async def __aenter__(self) -> "RawClient":
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._ws = await connect(self.url, compression=None, open_timeout=5)
                break
            except (OSError, asyncio.TimeoutError, Exception):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        self._reader = asyncio.create_task(self._read())
        await self.send("client-options-set", options=self.options)

    async def _read(self) -> None:
        try:
            async for raw in self._ws:
                self.frames.append(orjson.loads(raw))
                self._arrived.set()
        except Exception:
            pass
        finally:
            self._arrived.set()

    @property
    def closed(self) -> bool:
        return self._reader is None or self._reader.done()

    async def send(self, action: str, **fields: Any) -> None:
        msg = {"action": action, **{k.replace("_", "-"): v for k, v in fields.items()}}
        await self._ws.send(orjson.dumps(msg).decode())

    async def expect(self, predicate: Callable[[dict], bool], timeout: float = 20.0) -> dict:
        """Wait for (and consume) the first frame matching ``predicate``; other frames stay."""
        deadline = time.monotonic() + timeout
        while True:
            for i, frame in enumerate(self.frames):
                if predicate(frame):
                    del self.frames[i]
                    return frame
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching frame within {timeout} s; got {self.frames}")
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def quiet(self, seconds: float = 0.5) -> list[dict]:
        """Collect frames until none arrived for ``seconds``; returns and clears them."""
        while True:
            count = len(self.frames)
            await asyncio.sleep(seconds)
            if len(self.frames) == count:
                out, self.frames = self.frames, []
                return out

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


def update_of(object_id: str, **match: Any) -> Callable[[dict], bool]:
    """Predicate: an object-update for ``object_id`` (optionally with given fields)."""
    def predicate(frame: dict) -> bool:
        return (frame.get("action") == "object-update" and frame.get("id") == object_id
                and all(frame.get(k.replace("_", "-")) == v for k, v in match.items()))
    return predicate


class ResyncLog(logging.Handler):
    """Collects the Python client's refusals (logger ``seasync.client``): a patch from a version it does
    not hold, or one that does not apply. A test that must see none attaches it and checks ``lines``."""

    PATTERN = re.compile(r"an update was lost|does not apply")

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if self.PATTERN.search(message):
            self.lines.append(message)
