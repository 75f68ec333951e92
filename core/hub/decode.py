"""Requests reach the servicers as raw bytes and are decoded here, where a failure is ours to answer.

grpc Python decodes a request *before* the handler runs: an undecodable one (bad UTF-8 in a
string field, a corrupt wire format, nesting past the decoder's limit) ends in INTERNAL
"Exception deserializing request!" with an ERROR traceback in the log, and on a streaming call
it can leave the call's state behind so that ``server.stop()`` never completes. So the
generated ``add_*Servicer_to_server`` functions register through :class:`RawRequests`, which
swaps each method's request deserializer for "keep the bytes" and decodes in the handler: an
undecodable request is answered INVALID_ARGUMENT naming the message type and the decoder's reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from . import errors


class UndecodableRequest(ValueError):
    """One message of a request stream could not be decoded; ``str()`` says which and why."""


def _decode(decoder: Callable[[bytes], Any], raw: bytes, what: str) -> Any:
    try:
        return decoder(raw)
    except (DecodeError, RecursionError, ValueError) as exc:
        raise UndecodableRequest(f"not a valid {what} message: {exc}") from None


def _name(decoder: Callable[[bytes], Any]) -> str:
    owner = getattr(decoder, "__self__", None)
    desc = getattr(owner, "DESCRIPTOR", None)
    return desc.full_name if desc is not None else "request"


def _requests(raw_iterator: Iterator[bytes], decoder: Callable[[bytes], Any], what: str) -> Iterator[Any]:
    for raw in raw_iterator:
        yield _decode(decoder, raw, what)


def _raw_handler(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    decoder = handler.request_deserializer
    if decoder is None:
        return handler
    what = _name(decoder)
    kw = {"request_deserializer": None, "response_serializer": handler.response_serializer}

    def one(raw: bytes, context: grpc.ServicerContext) -> Any:
        try:
            return _decode(decoder, raw, what)
        except UndecodableRequest as exc:
            errors.abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc), [("request", str(exc))])

    if handler.request_streaming and handler.response_streaming:
        behavior = handler.stream_stream
        return grpc.stream_stream_rpc_method_handler(
            lambda it, context: behavior(_requests(it, decoder, what), context), **kw)
    if handler.request_streaming:
        behavior = handler.stream_unary
        return grpc.stream_unary_rpc_method_handler(
            lambda it, context: behavior(_requests(it, decoder, what), context), **kw)
    if handler.response_streaming:
        behavior = handler.unary_stream
        return grpc.unary_stream_rpc_method_handler(lambda raw, context: behavior(one(raw, context), context), **kw)
    behavior = handler.unary_unary
    return grpc.unary_unary_rpc_method_handler(lambda raw, context: behavior(one(raw, context), context), **kw)


class RawRequests:
    """Stands in for the ``grpc.Server`` given to a generated ``add_*Servicer_to_server``.

    The generated function registers a generic handler and then the same method handlers by
    service name; both are rebuilt here from the method handlers with raw-bytes requests.
    A request stream's undecodable message raises :class:`UndecodableRequest` from the
    handler's request iterator (the handler answers INVALID_ARGUMENT).
    """

    def __init__(self, server: grpc.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        """Ignored: :meth:`add_registered_method_handlers` follows with the same methods."""

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        raw = {name: _raw_handler(h) for name, h in handlers.items()}
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, raw),))
        self._server.add_registered_method_handlers(service, raw)
