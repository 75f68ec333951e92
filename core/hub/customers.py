"""The ``shopkeeper.v1.Customers`` service: thin glue between protobuf and :mod:`.domain`."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import grpc

from .._proto.v1 import customers_pb2, customers_pb2_grpc
from ..engine import operations as domain
from ..identity import IdentityError
from ..privacy import export_customer
from . import auth, convert, errors

if TYPE_CHECKING:
    from .server import Hub

_OP_NAMES = {v: k for k, v in customers_pb2.FactFilter.Op.items()}


def ref_key(ref: Any) -> object:
    """What a read about ``ref`` is keyed by for the read pool's affinity (its id or its identity)."""
    cid, ident = ref_args(ref)
    return cid or ident


def ref_args(ref: Any) -> tuple[str | None, tuple[str, str] | None]:
    which = ref.WhichOneof("ref")
    if which == "id":
        return ref.id, None
    if which == "identity":
        return None, (ref.identity.namespace, ref.identity.value)
    return None, None


class CustomersServicer(customers_pb2_grpc.CustomersServicer):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def _customer(self, folders: Any, ref: Any) -> Any:
        cid, ident = ref_args(ref)
        return domain.resolve_ref(folders, cid, ident, self.hub.identity_config)

    def GetCustomer(self, request: Any, context: grpc.ServicerContext) -> Any:
        recent = 10 if request.recent == 0 else max(request.recent, 0)
        with self.hub.guard(context), self.hub.read(ref_key(request.customer)) as f:
            return convert.customer(self._customer(f, request.customer), recent=min(recent, 1000))

    def Identify(self, request: Any, context: grpc.ServicerContext) -> Any:
        hub = self.hub
        pairs = [(i.namespace, i.value) for i in request.identities]
        traits = convert.struct_to_dict(request.traits) if request.HasField("traits") else {}
        source = request.source or auth.current().name
        with hub.guard(context):
            if not pairs:
                raise domain.BadArgument("identities", "give at least one identity")
            out = hub.write(context, lambda f, ch: domain.identify(
                f, ch, hub.resolver, pairs, traits, source, request.create_only))
            with hub.read(out.customer_id) as f:
                c = f.customer(out.customer_id)
                return customers_pb2.IdentifyResponse(customer=convert.customer(c), created=out.created,
                                                      merges=out.merges, proposals=out.proposals,
                                                      warnings=out.warnings)

    def FindCustomers(self, request: Any, context: grpc.ServicerContext) -> Any:
        page_size = request.page_size or 50
        with self.hub.guard(context):
            if not 0 < page_size <= 1000:
                raise domain.BadArgument("page_size", "must be 1..1000")
            prefix = None
            if request.HasField("identity_prefix"):
                prefix = (request.identity_prefix.namespace, request.identity_prefix.value)
            facts = []
            for ff in request.facts:
                op = _OP_NAMES.get(ff.op, "EQ")
                facts.append((ff.fact, "EQ" if op == "OP_UNSPECIFIED" else op,
                              convert.value_to_py(ff.value) if ff.HasField("value") else None))
            with self.hub.read() as f:
                found, token = domain.find_customers(
                    f, identity_prefix=prefix, segment=request.segment, facts=facts, page_size=page_size,
                    page_token=request.page_token, config=self.hub.identity_config)
                return customers_pb2.FindCustomersResponse(customers=[convert.summary(c) for c in found],
                                                           next_page_token=token)

    def MergeCustomers(self, request: Any, context: grpc.ServicerContext) -> Any:
        source = auth.current().name
        with self.hub.guard(context):
            rec = self.hub.write(context, lambda f, ch: domain.merge_customers(
                f, ch, request.survivor_id, request.absorbed_id, request.reason, source))
            return convert.merge(rec)

    def UnmergeCustomers(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.hub.guard(context):
            if not request.merge_id:
                raise domain.BadArgument("merge_id", "required")
            rec = self.hub.write(context, lambda f, ch: domain.unmerge_customers(
                f, ch, request.merge_id, self.hub.identity_config))
            return convert.merge(rec)

    def ListInteractions(self, request: Any, context: grpc.ServicerContext) -> Any:
        page_size = request.page_size or 50
        with self.hub.guard(context):
            if not 0 < page_size <= 1000:
                raise domain.BadArgument("page_size", "must be 1..1000")
            with self.hub.read(ref_key(request.customer)) as f:
                c = self._customer(f, request.customer)
                page, token = domain.list_interactions(
                    c, channel=request.channel, type=request.type,
                    since=convert.us(request.since, "since") if request.HasField("since") else None,
                    until=convert.us(request.until, "until") if request.HasField("until") else None,
                    oldest_first=request.oldest_first, page_size=page_size, page_token=request.page_token)
                return customers_pb2.ListInteractionsResponse(
                    customer_id=c.id, interactions=[convert.interaction(it) for it in page], next_page_token=token)

    def SetConsent(self, request: Any, context: grpc.ServicerContext) -> Any:
        hub = self.hub
        source = request.source or auth.current().name
        purpose = request.purpose or "marketing"

        def op(f: Any, ch: Any) -> Any:
            return domain.set_consent(f, ch, self._customer(f, request.customer), request.channel, purpose,
                                      request.granted, source)

        with hub.guard(context):
            _cid, cs = hub.write(context, op)
            return convert.consent(request.channel, purpose, cs)

    def ExportCustomer(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.hub.guard(context), self.hub.read(ref_key(request.customer)) as f:
            c = self._customer(f, request.customer)
            doc = export_customer(f, c)
            return customers_pb2.ExportCustomerResponse(
                customer_id=c.id, json=json.dumps(doc, ensure_ascii=False, default=str, indent=1))

    def ForgetCustomer(self, request: Any, context: grpc.ServicerContext) -> Any:
        def op(f: Any, ch: Any) -> Any:
            return domain.forget_customer(f, ch, self._customer(f, request.customer), request.reason)

        with self.hub.guard(context):
            cid, n = self.hub.write(context, op)
            return customers_pb2.ForgetCustomerResponse(customer_id=cid, identities_tombstoned=n)


__all__ = ["CustomersServicer", "IdentityError", "errors"]
