"""The asyncio client, :class:`AsyncClient` (``grpc.aio``): the same helpers, awaitable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

import grpc

from .._proto.v1 import (
    interactions_pb2,
)
from .calls import RETRYABLE, _Base, _Calls, make_event


class AsyncClient(_Calls, _Base):
    """The asyncio client (``grpc.aio``); same helpers as :class:`Client`, awaitable."""

    _channels = grpc.aio

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def call(self, method: Callable, request: Any, timeout: float | None = None) -> Any:
        attempt = 0
        while True:
            try:
                return await method(request, metadata=self.metadata, timeout=timeout or self.timeout)
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in RETRYABLE or attempt >= self.retries:
                    raise
                await asyncio.sleep(self._delay(attempt))
                attempt += 1

    async def stream(self, batches: AsyncIterator[list[Mapping[str, Any]]] | Iterable[list[Mapping[str, Any]]],
                     ) -> AsyncIterator[interactions_pb2.BatchAck]:
        """Send lists of events as batches on one stream; yields each batch's acknowledgement in order."""
        async def requests() -> AsyncIterator[interactions_pb2.EventBatch]:
            n = 0
            if hasattr(batches, "__aiter__"):
                async for b in batches:  # type: ignore[union-attr]
                    n += 1
                    yield interactions_pb2.EventBatch(batch_id=str(n), events=[make_event(e) for e in b])
            else:
                for b in batches:  # type: ignore[union-attr]
                    n += 1
                    yield interactions_pb2.EventBatch(batch_id=str(n), events=[make_event(e) for e in b])

        call = self.interactions.StreamInteractions(requests(), metadata=self.metadata)
        async for ack in call:
            yield ack
