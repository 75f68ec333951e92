"""The asyncio client, :class:`AsyncClient` (``grpc.aio``): the same helpers, awaitable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

import grpc

from .._proto.v1 import (
    admin_pb2_grpc,
    campaigns_pb2_grpc,
    customers_pb2_grpc,
    interactions_pb2,
    interactions_pb2_grpc,
    rules_pb2_grpc,
    watch_pb2_grpc,
)
from .calls import RETRYABLE, _Base, _Calls, _credentials, make_event


class AsyncClient(_Calls, _Base):
    """The asyncio client (``grpc.aio``); same helpers as :class:`Client`, awaitable."""

    def __init__(self, target: str = "127.0.0.1:50051", api_key: str | None = None, *, tls: bool = False,
                 root_certificates: bytes | None = None, private_key: bytes | None = None,
                 certificate_chain: bytes | None = None, retries: int = 6, backoff: float = 0.05,
                 max_backoff: float = 2.0, timeout: float | None = 30.0,
                 max_message_bytes: int = 4 * 1024 * 1024) -> None:
        super().__init__(target, api_key, tls=tls, root_certificates=root_certificates, private_key=private_key,
                         certificate_chain=certificate_chain, retries=retries, backoff=backoff,
                         max_backoff=max_backoff, timeout=timeout, max_message_bytes=max_message_bytes)
        if self._tls:
            self.channel = grpc.aio.secure_channel(target, _credentials(*self._creds), options=self._options)
        else:
            self.channel = grpc.aio.insecure_channel(target, options=self._options)
        self.customers = customers_pb2_grpc.CustomersStub(self.channel)
        self.interactions = interactions_pb2_grpc.InteractionsStub(self.channel)
        self.watch_stub = watch_pb2_grpc.WatchStub(self.channel)
        self.admin = admin_pb2_grpc.AdminStub(self.channel)
        self.rules = rules_pb2_grpc.RulesStub(self.channel)
        self.campaigns = campaigns_pb2_grpc.CampaignsStub(self.channel)

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
