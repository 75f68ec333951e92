"""``shopkeeper serve``: run the hub until SIGTERM or Ctrl-C, then drain and close cleanly."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time

import click

_STD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
               "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        for k, v in vars(record).items():
            if k not in _STD_ATTRS and not k.startswith("_"):
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(fmt: str, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


@click.command()
@click.option("--store", "store_uri", default=None, envvar="SHOPKEEPER_STORE",
              help="Storage URI (default from the config file, else file://./var/Data.fs).")
@click.option("--listen", default=None, help="host:port to serve gRPC on (default 127.0.0.1:50051).")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), default=None,
              envvar="SHOPKEEPER_CONFIG", help="Hub config file (YAML): API keys, TLS, limits (docs/hub.md).")
@click.option("--tls-cert", default=None, help="PEM certificate chain: serve TLS.")
@click.option("--tls-key", default=None, help="PEM private key for --tls-cert.")
@click.option("--tls-client-ca", default=None, help="PEM CA bundle: require client certificates (mTLS).")
@click.option("--metrics", "metrics_listen", default=None, help="host:port for the Prometheus /metrics endpoint.")
@click.option("--grace", default=10.0, show_default=True, help="Seconds in-flight calls get to finish on shutdown.")
@click.option("--log-format", type=click.Choice(["json", "text"]), default=None, help="Log lines as JSON (default).")
@click.option("--rules", "rules_dir", type=click.Path(file_okay=False), default=None,
              help="Central rules directory (default from the config file, else $SHOPKEEPER_RULES_DIR or ./rules).")
@click.option("--allow-invalid-rules", is_flag=True, default=None,
              help="Start even if some rule files have errors: the valid ones are in force, health reports "
                   "the rules component NOT_SERVING (default: refuse to start and print the errors).")
def serve(store_uri: str | None, listen: str | None, config_file: str | None, tls_cert: str | None,
          tls_key: str | None, tls_client_ca: str | None, metrics_listen: str | None, grace: float,
          log_format: str | None, rules_dir: str | None, allow_invalid_rules: bool | None) -> None:
    """Run the gRPC hub on an embedded FileStorage (or any storage URI) until stopped."""
    from ..store import Store, StoreError
    from .config import ConfigError, HubConfig
    from .server import Hub, tune_process

    try:
        cfg = HubConfig.load(config_file) if config_file else HubConfig()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    cfg.store = store_uri or cfg.store
    cfg.listen = listen or cfg.listen
    cfg.tls.cert = tls_cert or cfg.tls.cert
    cfg.tls.key = tls_key or cfg.tls.key
    cfg.tls.client_ca = tls_client_ca or cfg.tls.client_ca
    cfg.metrics_listen = metrics_listen or cfg.metrics_listen
    cfg.rules_dir = rules_dir or cfg.rules_dir
    cfg.allow_invalid_rules = bool(allow_invalid_rules) or cfg.allow_invalid_rules
    setup_logging(log_format or cfg.log_format)
    log = logging.getLogger("shopkeeper.hub")
    try:
        store = Store.open(cfg.store)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc
    hub = Hub(cfg, store=store)
    try:
        hub.start()
    except Exception as exc:
        store.close()
        raise click.ClickException(f"cannot start the hub: {exc}") from exc
    tune_process()
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal received", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    click.echo(f"shopkeeper hub listening on {cfg.listen.rpartition(':')[0]}:{hub.port} "
               f"({store.description}); Ctrl-C to stop", err=True)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        hub.stop(grace)
        store.close()
