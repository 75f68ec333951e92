"""The hub process: one store, one writer thread, the gRPC services, health and reflection.

The write path is not here: the hub creates one :class:`~shopkeeper.engine.Engine` (store,
vocabulary, processors, the one writer, the change feed) and its servicers translate
proto → engine → proto. Attributes the servicers and in-process adapters read
(``writer``, ``broker``, ``event_types``, ``resolver``) are the engine's.

Life cycle: :meth:`Hub.start` opens the store, loads plugins, starts the engine (its
writer runs before ``shopkeeper_startup``, so plugins can submit work from their start-up
hook; a plugin whose start-up raises is disabled and named in the log; the hub keeps
running), then the gRPC server. :meth:`Hub.stop` reports NOT_SERVING, ends Watch streams,
fails the writer's queued jobs (:meth:`~shopkeeper.engine.writer.Writer.shed`: their calls answer
UNAVAILABLE, to be resent), stops accepting calls and lets in-flight ones finish (``grace``), then
stops the engine (``shopkeeper_shutdown`` while the writer still takes work, then the writer
commits the job in progress and fails what is queued) and closes the store. Nothing is
acknowledged before its commit, so a crash at any point loses no acknowledged event
(docs/operations.md, "Stopping a hub").
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from concurrent.futures import Future
from typing import Any

import grpc
import pluggy
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from .. import contact, outbox
from .._proto.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    campaigns_pb2,
    campaigns_pb2_grpc,
    customers_pb2,
    customers_pb2_grpc,
    interactions_pb2,
    interactions_pb2_grpc,
    outbox_pb2,
    outbox_pb2_grpc,
    rules_pb2,
    rules_pb2_grpc,
    watch_pb2,
    watch_pb2_grpc,
)
from ..context import PluginState
from ..engine import Engine, feed
from ..engine import operations as domain
from ..engine.writer import DeadlineExpired, Writer, WriterStopped
from ..events import EventError, EventTypes
from ..identity import IdentityConfig, IdentityError, MergeError, Resolver
from ..plugins import StartupRefused, get_plugin_manager
from ..readpool import ReadPool, ReadPoolClosed
from ..store import Folders, Store, StoreOptions
from . import errors
from .admin import AdminServicer
from .auth import Authenticator, HubInterceptor
from .campaigns import CampaignsServicer
from .collector import (  # noqa: F401 - where shopkeeper serve, the benches and probes import them
    GC_GEN0_THRESHOLD,
    GIL_SWITCH_SECONDS,
    tune_gc,
    tune_process,
)
from .config import ConfigError, HubConfig
from .customers import CustomersServicer
from .decode import RawRequests
from .interactions import InteractionsServicer
from .metrics import Metrics
from .outbox import OutboxServicer
from .rules import RulesServicer
from .watch import WatchServicer

log = logging.getLogger("shopkeeper.hub")

SERVICE_NAMES = (
    customers_pb2.DESCRIPTOR.services_by_name["Customers"].full_name,
    interactions_pb2.DESCRIPTOR.services_by_name["Interactions"].full_name,
    watch_pb2.DESCRIPTOR.services_by_name["Watch"].full_name,
    outbox_pb2.DESCRIPTOR.services_by_name["Outbox"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name,
    rules_pb2.DESCRIPTOR.services_by_name["Rules"].full_name,
    campaigns_pb2.DESCRIPTOR.services_by_name["Campaigns"].full_name,
)


#: How long past ``grace`` :meth:`Hub.stop` waits for the gRPC server before it commits the
#: queue, runs the shutdown hooks and closes the store anyway.
STOP_MARGIN_SECONDS = 2.0


def _is_loopback(listen: str) -> bool:
    host = listen.rpartition(":")[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


class Hub:
    def __init__(self, config: HubConfig, *, store: Store | None = None, plugins: tuple[object, ...] = (),
                 load_entrypoints: bool = True) -> None:
        self.config = config
        self._own_store = store is None
        self.store: Store = store  # type: ignore[assignment]
        self._extra_plugins = plugins
        self._load_entrypoints = load_entrypoints
        self.metrics = Metrics()
        #: per-hub plugin state (shopkeeper.context.HubContext.plugin_state)
        self.plugin_state = PluginState()
        self.disabled: dict[str, str] = {}
        self.open_streams = 0
        #: set when :meth:`stop` begins: long-lived calls end (UNAVAILABLE) rather than feed the writer
        self.stopping = False
        self._streams_lock = threading.Lock()
        self.started_at = time.monotonic()
        self.server: grpc.Server | None = None
        self.port = 0
        self._stopped = threading.Event()
        self._metrics_server: Any = None
        #: components serving in a reduced way: name -> why (health reports each NOT_SERVING)
        self.components: dict[str, str | None] = {}
        self.health: Any = None
        self._reads: ReadPool | None = None

    # -- start / stop -------------------------------------------------------------------

    def start(self) -> Hub:
        cfg = self.config
        if self.store is None:
            self.store = Store.open(cfg.store, StoreOptions(cache_size=cfg.limits.cache_objects))
        self.pm: pluggy.PluginManager = get_plugin_manager(load_entrypoints=self._load_entrypoints,
                                                           extra=self._extra_plugins)
        contact.configure(overrides=cfg.contact)  # before the plugins: the catalogue's keys go under it
        self._reads = ReadPool(self.store, min(cfg.limits.max_concurrent_reads, self.store.options.pool_size),
                               cache_objects=cfg.limits.read_cache_objects, affinity=cfg.limits.read_affinity,
                               poll_interval=cfg.limits.read_poll_interval)
        self.engine = Engine(self.store, self.pm, identity_config=cfg.identity, context=self, disabled=self.disabled,
                             max_group_events=cfg.limits.group_commit_max_events,
                             watch_memory_entries=cfg.watch_memory_entries,
                             trim=Engine.trim_feed(cfg.watch_retention_hours, cfg.watch_max_entries),
                             on_stats=self.metrics.writer_stat,
                             pack_every_seconds=cfg.pack.every_seconds if cfg.pack else None,
                             pack_keep_days=cfg.pack.keep_days if cfg.pack else 0.0,
                             after_pack=self._pack_rewrite(cfg))
        try:
            self.engine.start()
        except StartupRefused:
            self.engine.stop()  # shutdown hooks and the writer: nothing is left running
            raise
        self.metrics.watch_writer(lambda writer=self.engine.writer: writer.queue_depth)
        # No walk over the outbox here: an intent left "sending" with its attempts used up is ended
        # "failed" by its next claim (the adapters' start-up scan and sweep hand every intent not yet
        # final to a claim), or marked "sent" when the adapter's journal shows it was delivered — which
        # the start-up walk (``outbox.expire``) got wrong, failing it first. That walk loaded the customer
        # of every intent not yet final, one by one (the 10M hub took 9-40 s to open); see
        # tests/adapters/test_outbox_exhausted.py. The writer's connection for operations is still emptied:
        # the engine's start may have loaded records there that it would keep for the hub's life (§99).
        self.engine.writer.submit_op(lambda f, changes: f.conn.cacheMinimize()).result()
        if cfg.limits.read_warm_index:
            self._reads.start_warming()  # the index's interior nodes, each read connection its share
        try:
            return self._serve(cfg)
        except BaseException:
            # e.g. the port is taken: stop the writer (its connections) so that closing the
            # store works and the caller's error is the only one reported
            self.engine.stop()
            raise

    def _serve(self, cfg: HubConfig) -> Hub:
        """Start the gRPC server (and the metrics endpoint) over the started engine."""
        anonymous = cfg.allow_anonymous
        if anonymous is None:
            anonymous = not cfg.api_keys and _is_loopback(cfg.listen)
        if not cfg.api_keys and not anonymous:
            raise ValueError(f"no api_keys configured and {cfg.listen} is not a loopback address: "
                             "configure API keys (docs/hub.md) or set allow_anonymous: true")
        if anonymous:
            log.warning("API keys are not required: every caller has every scope (allow_anonymous)")
        interceptor = HubInterceptor(Authenticator(cfg.api_keys, anonymous), self.metrics)
        lim = cfg.limits
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=lim.max_workers, thread_name_prefix="shopkeeper-rpc"),
            interceptors=[interceptor],
            options=[
                ("grpc.max_receive_message_length", lim.max_message_bytes),
                ("grpc.max_send_message_length", lim.max_message_bytes),
                ("grpc.so_reuseport", 1 if cfg.reuse_port else 0),  # several hubs, one address
                ("grpc.keepalive_time_ms", 60_000),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
                ("grpc.keepalive_permit_without_calls", 1),
            ],
            maximum_concurrent_rpcs=lim.max_workers * 8,
        )
        raw = RawRequests(server)  # requests are decoded in the handlers: see decode.py
        customers_pb2_grpc.add_CustomersServicer_to_server(CustomersServicer(self), raw)
        interactions_pb2_grpc.add_InteractionsServicer_to_server(InteractionsServicer(self), raw)
        watch_pb2_grpc.add_WatchServicer_to_server(WatchServicer(self), raw)
        outbox_pb2_grpc.add_OutboxServicer_to_server(OutboxServicer(self), raw)
        admin_pb2_grpc.add_AdminServicer_to_server(AdminServicer(self), raw)
        rules_pb2_grpc.add_RulesServicer_to_server(RulesServicer(self), raw)
        campaigns_pb2_grpc.add_CampaignsServicer_to_server(CampaignsServicer(self), raw)
        self.health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        _enable_reflection(SERVICE_NAMES + (health.SERVICE_NAME,), server)
        try:
            if cfg.tls.enabled:
                creds = _server_credentials(cfg)
                self.port = server.add_secure_port(cfg.listen, creds)
            else:
                self.port = server.add_insecure_port(cfg.listen)
        except RuntimeError:  # grpc's "Failed to bind": say what to do about it
            self.port = 0
        if not self.port:
            raise OSError(f"cannot listen on {cfg.listen}: the address is in use or not this machine's"
                          + ("" if cfg.reuse_port else " (several hubs on one address: reuse_port: true)"))
        server.start()
        self.server = server
        for name in ("",) + SERVICE_NAMES:
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        for name, reason in list(self.components.items()):
            self.set_component(name, reason)
        if cfg.metrics_listen:
            self.metrics.watch_outbox(self._outbox_depth)
            self._metrics_server = self.metrics.serve(cfg.metrics_listen)
        self.started_at = time.monotonic()
        log.info("hub serving", extra={"listen": cfg.listen, "port": self.port, "store": self.store.description,
                                       "tls": cfg.tls.enabled, "mtls": bool(cfg.tls.client_ca),
                                       "api_keys": len(cfg.api_keys)})
        return self

    def stop(self, grace: float = 10.0) -> None:
        if self._stopped.is_set():
            return
        log.info("hub stopping: finishing in-flight calls", extra={"grace_seconds": grace})
        self.stopping = True  # StreamInteractions takes no more batches: the client resends them elsewhere
        self.health.enter_graceful_shutdown()
        self.broker.close()  # Watch streams end; clients resume from their cursor elsewhere
        # the writer's backlog is not committed on the way out (that took a busy hub over 20 s): the job in
        # progress commits, the queued ones fail now with HubStopping, which their calls answer UNAVAILABLE
        # ("retry against another hub or after restart"); the stop's own work below still goes through
        if self.writer is not None:
            self.writer.shed()
        if self.server is not None:
            # grpc cancels the calls still running after ``grace``; its shutdown then completes at
            # once, unless a call's state is stuck: never wait for that longer than a few seconds
            if not self.server.stop(grace).wait(grace + STOP_MARGIN_SECONDS):
                log.warning("gRPC server did not finish stopping; going on with the shutdown",
                            extra={"waited_seconds": grace + STOP_MARGIN_SECONDS})
        self.engine.stop()
        if self._reads is not None:
            self._reads.close()
        if self._metrics_server is not None:
            with contextlib.suppress(Exception):
                server, _thread = self._metrics_server  # type: ignore[misc]
                server.shutdown()
        if self._own_store:
            self.store.close()
        contact.configure(overrides={})  # this hub's contact: section leaves with it
        self._stopped.set()
        log.info("hub stopped: everything acknowledged is committed; store closed")

    def set_component(self, name: str, reason: str | None) -> None:
        """Report a component (``rules``) as serving (``reason`` None) or not, and why; the gRPC
        health service answers for ``name``, ``Admin.ListPlugins`` and the log say why."""
        self.components[name] = reason
        if reason:
            log.error("component %s not serving: %s", name, reason)
        if self.health is not None:
            self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING if reason
                            else health_pb2.HealthCheckResponse.SERVING)

    def wait(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    def __enter__(self) -> Hub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop(grace=1.0)

    # -- the engine's parts, as servicers and in-process adapters know them -------------

    @property
    def writer(self) -> Writer | None:
        engine = getattr(self, "engine", None)
        return engine.writer if engine is not None else None

    @property
    def broker(self) -> feed.Broker:
        return self.engine.broker  # type: ignore[return-value]

    @property
    def event_types(self) -> EventTypes:
        return self.engine.event_types  # type: ignore[return-value]

    @property
    def resolver(self) -> Resolver:
        return self.engine.resolver  # type: ignore[return-value]

    @property
    def identity_config(self) -> IdentityConfig:
        return self.engine.identity_config

    def decide(self, customer: Any, touchpoint: str, placement: str, context: dict[str, Any],
               limit: int | None = None, identity: tuple[str, str] | None = None) -> list[dict]:
        """:meth:`shopkeeper.engine.Engine.decide`."""
        return self.engine.decide(customer, touchpoint, placement, context, limit, identity=identity)

    def _outbox_depth(self) -> dict[str, int]:
        """Open intents per channel, from the outbox index (for ``shopkeeper_outbox_depth``)."""
        with self.read() as f:
            return outbox.depth_by_channel(f)

    def _pack_rewrite(self, cfg: HubConfig) -> Callable[[], dict[str, Any]] | None:
        """``pack.rewrite`` on PostgreSQL: what runs after each pack so that erased rows leave the
        database files (``shopkeeper.ops.pg.erase_rewrite``); refused at start on other storages."""
        if not (cfg.pack and cfg.pack.rewrite):
            return None
        if not str(self.store.uri).startswith("postgresql"):
            raise ConfigError("pack.rewrite: only for a postgresql:// store (FileStorage and ZEO packs "
                              "already leave no erased data behind)")
        from ..ops import pg

        return functools.partial(pg.erase_rewrite, self.store.uri)

    # -- helpers for servicers ----------------------------------------------------------

    def deadline(self, context: grpc.ServicerContext) -> float:
        remaining = context.time_remaining()
        if remaining is None or remaining > 1e8:
            remaining = self.config.limits.default_deadline_seconds
        return time.monotonic() + remaining

    def result(self, context: grpc.ServicerContext, fut: Future) -> Any:
        remaining = context.time_remaining()
        timeout = None if remaining is None or remaining > 1e8 else max(remaining, 0.0)
        try:
            return fut.result(timeout=timeout)
        except futures.TimeoutError:
            errors.abort(context, grpc.StatusCode.DEADLINE_EXCEEDED,
                         "deadline exceeded waiting for the commit; the request may still be applied — "
                         "resend it with the same idempotency key")

    @contextlib.contextmanager
    def read(self, key: object = None) -> Iterator[Folders]:
        """A read-only view for one request, on a pooled connection whose cache is warm; ``key``
        (the customer reference the request names) picks that customer's own connection when it is
        idle (``limits.read_affinity``).

        At most ``limits.max_concurrent_reads`` (never more than the store's connection pool)
        at once, on connections that stay open (:class:`~shopkeeper.readpool.ReadPool`): a burst
        of 128 concurrent reads on fresh connections would load every object from disk into
        empty caches and throw them away again, which costs far more than waiting a moment for
        a warm one.
        """
        assert self._reads is not None, "the hub is not started"
        with self._reads.read(key) as f:
            yield f

    def write(self, context: grpc.ServicerContext, op: Any) -> Any:
        return self.result(context, self.writer.submit_op(op, self.deadline(context)))

    @contextlib.contextmanager
    def guard(self, context: grpc.ServicerContext) -> Iterator[None]:
        """Turn domain exceptions into gRPC status codes with details."""
        try:
            yield
        except domain.NotFound as exc:
            errors.abort(context, grpc.StatusCode.NOT_FOUND, str(exc))
        except domain.AlreadyExists as exc:
            errors.abort(context, grpc.StatusCode.ALREADY_EXISTS, str(exc))
        except (domain.Precondition, MergeError) as exc:
            errors.abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        except (domain.BadArgument, IdentityError, EventError) as exc:
            errors.abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc), [(exc.field, exc.reason)])
        except DeadlineExpired as exc:
            errors.abort(context, grpc.StatusCode.DEADLINE_EXCEEDED, str(exc))
        except (WriterStopped, ReadPoolClosed) as exc:
            errors.abort(context, grpc.StatusCode.UNAVAILABLE, str(exc))

    @contextlib.contextmanager
    def stream_slot(self, context: grpc.ServicerContext) -> Iterator[None]:
        """Bound long-lived calls so that unary calls (Decide) always find a free thread."""
        with self._streams_lock:
            if self.open_streams >= self.config.limits.max_streams:
                full = True
            else:
                full = False
                self.open_streams += 1
        if full:
            errors.abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                         f"{self.config.limits.max_streams} streams already open (limits.max_streams)")
        self.metrics.open_streams.set(self.open_streams)
        try:
            yield
        finally:
            with self._streams_lock:
                self.open_streams -= 1
            self.metrics.open_streams.set(self.open_streams)

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        with self._streams_lock:
            self.broker.watchers += 1
        self.metrics.watchers.set(self.broker.watchers)
        try:
            yield
        finally:
            with self._streams_lock:
                self.broker.watchers -= 1
            self.metrics.watchers.set(self.broker.watchers)


class HealthServicer(health.HealthServicer):
    """grpcio-health-checking's servicer plus ``List`` (every service's status at once), which its
    generated base class declares but the servicer leaves UNIMPLEMENTED (as of 1.85)."""

    def List(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802 - the RPC's name
        with self._lock:  # the base class keeps the statuses under this lock
            statuses = dict(self._server_status)
        return health_pb2.HealthListResponse(
            statuses={name: health_pb2.HealthCheckResponse(status=st) for name, st in statuses.items()})


REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


def _enable_reflection(service_names: tuple[str, ...], server: grpc.Server) -> None:
    """Serve reflection as ``grpc.reflection.v1`` (what grpcurl, Postman and grpc-js tools ask
    first) and ``v1alpha``. grpcio-reflection ships only v1alpha; v1 has the same messages with
    the same field numbers, so the v1alpha servicer answers both under the two names."""
    names = service_names + (reflection.SERVICE_NAME, REFLECTION_V1)
    servicer = reflection.ReflectionServicer(names)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(REFLECTION_V1, {
        "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
            servicer.ServerReflectionInfo,
            request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
            response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString),
    }),))


def _server_credentials(cfg: HubConfig) -> grpc.ServerCredentials:
    from pathlib import Path

    key = Path(cfg.tls.key).read_bytes()  # type: ignore[arg-type]
    cert = Path(cfg.tls.cert).read_bytes()  # type: ignore[arg-type]
    ca = Path(cfg.tls.client_ca).read_bytes() if cfg.tls.client_ca else None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)
