"""Rich gRPC errors (``google.rpc.Status`` with details) from domain exceptions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status


def status(code: grpc.StatusCode, message: str, violations: Sequence[tuple[str, str]] = ()) -> grpc.Status:
    st = status_pb2.Status(code=code.value[0], message=message)
    if violations:
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=f, description=d) for f, d in violations
        ]))
        st.details.append(detail)
    return rpc_status.to_status(st)


def abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str,
          violations: Sequence[tuple[str, str]] = ()) -> NoReturn:
    context.abort_with_status(status(code, message, violations))
    raise AssertionError("unreachable")  # abort_with_status raises


def invalid(context: grpc.ServicerContext, message: str, field: str | None = None) -> NoReturn:
    abort(context, grpc.StatusCode.INVALID_ARGUMENT, message, [(field, message)] if field else ())


def not_found(context: grpc.ServicerContext, message: str) -> NoReturn:
    abort(context, grpc.StatusCode.NOT_FOUND, message)


def precondition(context: grpc.ServicerContext, message: str) -> NoReturn:
    abort(context, grpc.StatusCode.FAILED_PRECONDITION, message)


def code_number(code: grpc.StatusCode) -> int:
    return int(code.value[0])


OK = code_pb2.OK
