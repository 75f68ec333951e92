"""A real Kannel for the SMS tests: bearerbox + smsbox + the fake SMS centre ``fakesmsc``.

:class:`Kannel` writes a private ``kannel.conf`` on free loopback ports (admin, smsbox,
sendsms, the fake SMSC) into the test's directory, starts the three daemons with their logs
beside it, waits until bearerbox's status page shows the smsbox and the fake SMSC on-line
(state, not a sleep), and kills them all at the end. What the fake SMSC receives (the phone
side) is read back from fakesmsc's output, one ``Got message N: <from to type text>`` line per
SMS (per part of a concatenated one); :meth:`Kannel.mo` types a message *from* a phone into
fakesmsc's interactive mode, which bearerbox hands to smsbox's sms-service like any inbound SMS.

Installed by ``scripts/install-test-deps.sh`` (Debian ``kannel`` and ``kannel-extras``); a
missing binary **fails** the tests that need it rather than skipping them.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from shopkeeper.testing import free_port, wait_for

SBIN = os.environ.get("SHOPKEEPER_KANNEL_SBIN", "/usr/sbin")
FAKESMSC = os.environ.get("SHOPKEEPER_FAKESMSC", "/usr/lib/kannel/test/fakesmsc")
GOT = re.compile(r"Got message \d+: <(\S+) (\S+) (text|data|udh|ucs-2) ?(.*)>$")
SENT = re.compile(r"^SMS: received \d+ \(\d+ queued\), sent (\d+) \((\d+) queued\)", re.M)
USER, PASSWORD = "shopkeeper", "sendsms-test"


def _require() -> None:
    missing = [p for p in (f"{SBIN}/bearerbox", f"{SBIN}/smsbox", FAKESMSC) if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail(f"SMS tests need Kannel ({', '.join(missing)} missing): run `sh scripts/install-test-deps.sh` "
                    "(Debian packages kannel and kannel-extras)", pytrace=False)


class Kannel:
    """bearerbox + smsbox + fakesmsc on free loopback ports (see the module docstring).

    ``interactive=True`` runs fakesmsc so that :meth:`mo` can inject inbound messages (it then
    reads what bearerbox sends about once a second); ``False`` makes it a receive-only phone
    network, draining bearerbox as fast as it sends (benchmarks, the crash test).
    """

    def __init__(self, tmp: Path, *, interactive: bool = True, dlr_retries: int = 10,
                 smsbox_options: dict[str, str] | None = None) -> None:
        _require()
        self.dir = tmp
        self.dir.mkdir(parents=True, exist_ok=True)
        self.interactive = interactive
        self.admin_port, self.box_port, self.smsc_port, self.sendsms_port = (free_port() for _ in range(4))
        self.adapter_port = free_port()  # where the adapter under test serves DLRs and inbound messages
        self.token = "kannel-test-token"
        self.procs: dict[str, subprocess.Popen] = {}
        self.conf = self.dir / "kannel.conf"
        self.smsbox_options = dict(smsbox_options or {})  # extra smsbox settings (benchmarks' A/B runs)
        self.conf.write_text(self._config(dlr_retries))
        self._out = self.dir / "fakesmsc.out"

    @property
    def sendsms_url(self) -> str:
        return f"http://127.0.0.1:{self.sendsms_port}/cgi-bin/sendsms"

    def adapter_config(self, **extra: Any) -> dict[str, Any]:
        """The ``adapters.sms`` settings that reach this Kannel and are reached by it."""
        return {"sendsms_url": self.sendsms_url, "username": USER, "password": PASSWORD,
                "http_listen": f"127.0.0.1:{self.adapter_port}", "token": self.token,
                "default_sender": "ShopCo", **extra}

    def _config(self, dlr_retries: int) -> str:
        d = self.dir
        mo = (f"http://127.0.0.1:{self.adapter_port}/kannel/{self.token}/mo?from=%p&to=%P&text=%a&id=%I")
        return f"""# written by tests/adapters/kannel.py for one test run
group = core
admin-port = {self.admin_port}
admin-password = admin-test
status-password = admin-test
admin-allow-ip = "127.0.0.1"
smsbox-port = {self.box_port}
box-allow-ip = "127.0.0.1"
log-file = "{d}/bearerbox.log"
log-level = 1
access-log = "{d}/access.log"
dlr-storage = internal
sms-resend-freq = 1
sms-resend-retry = -1

group = smsc
smsc = fake
smsc-id = FAKE
host = 127.0.0.1
port = {self.smsc_port}
connect-allow-ip = "127.0.0.1"

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {self.box_port}
sendsms-port = {self.sendsms_port}
log-file = "{d}/smsbox.log"
log-level = 1
access-log = "{d}/smsbox-access.log"
http-request-retry = {dlr_retries}
http-queue-delay = 1
{"".join(f"{k} = {v}" + chr(10) for k, v in self.smsbox_options.items())}
group = sendsms-user
username = {USER}
password = {PASSWORD}
concatenation = true
max-messages = 10

group = sms-service
keyword = default
catch-all = true
get-url = "{mo}"
max-messages = 1
omit-empty = true
accept-x-kannel-headers = false
"""

    # -- lifecycle ------------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str], **kw: Any) -> subprocess.Popen:
        log = open(self.dir / f"{name}.stdout", "ab")  # noqa: SIM115 - the child holds it
        proc = subprocess.Popen(args, stdout=kw.pop("stdout", log), stderr=subprocess.STDOUT, cwd=self.dir, **kw)
        self.procs[name] = proc
        return proc

    def start(self) -> Kannel:
        self._spawn("bearerbox", [f"{SBIN}/bearerbox", "-v", "1", str(self.conf)])
        self._wait("bearerbox's admin port", lambda: self.status() is not None)
        out = open(self._out, "ab")  # noqa: SIM115 - fakesmsc writes every SMS it gets here
        if self.interactive:  # no message argument: fakesmsc reads the ones to send from stdin
            self._spawn("fakesmsc", [FAKESMSC, "-H", "127.0.0.1", "-r", str(self.smsc_port), "-i", "0"],
                        stdin=subprocess.PIPE, stdout=out)
        else:  # one canned message, sent 0 times: fakesmsc only receives, as fast as it can
            self._spawn("fakesmsc", [FAKESMSC, "-H", "127.0.0.1", "-r", str(self.smsc_port), "-i", "0",
                                     "-m", "0", "0 0 text nop"], stdout=out)
        self._spawn("smsbox", [f"{SBIN}/smsbox", "-v", "1", str(self.conf)])
        self._wait("the fake SMSC and the smsbox on-line", self.ready)
        self._wait("smsbox's sendsms port", lambda: _accepts(self.sendsms_port))
        return self

    def status(self) -> str | None:
        try:
            url = f"http://127.0.0.1:{self.admin_port}/status.txt?password=admin-test"
            with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - loopback
                return r.read().decode("utf-8", "replace")
        except OSError:
            return None

    def ready(self) -> bool:
        s = self.status() or ""
        boxes = s.partition("Box connections:")[2].partition("SMSC connections:")[0]
        smscs = s.partition("SMSC connections:")[2]
        return "smsbox:" in boxes and "FAKE" in smscs and "(online" in smscs

    def _wait(self, what: str, ok: Any, timeout: float = 20.0) -> None:
        def ready() -> bool:
            if ok():
                return True
            for name, p in self.procs.items():
                if p.poll() is not None:
                    pytest.fail(f"{name} exited with {p.returncode} while waiting for {what}; see {self.dir}/*.log "
                                f"and {self.dir}/{name}.stdout:\n{self.tail(name)}")
            return False

        wait_for(ready, timeout, 0.05, f"Kannel: {what} (logs in {self.dir})")

    def tail(self, name: str, n: int = 20) -> str:
        f = self.dir / (f"{name}.log" if name != "fakesmsc" else "fakesmsc.out")
        if not f.exists():
            f = self.dir / f"{name}.stdout"
        return "\n".join(f.read_text(errors="replace").splitlines()[-n:]) if f.exists() else ""

    def stop(self) -> None:
        """Kill every daemon started (nothing of theirs needs to survive a test)."""
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
        for p in self.procs.values():
            p.wait(10)
            if p.stdin is not None:
                p.stdin.close()

    # -- the phone side -------------------------------------------------------------------

    def received(self) -> list[dict[str, str]]:
        """Every SMS part the fake SMSC got: ``sender``, ``to``, ``type`` and ``text`` (decoded)."""
        out = []
        text = self._out.read_text(encoding="utf-8", errors="replace") if self._out.exists() else ""
        for line in text.splitlines():
            m = GOT.search(line)
            if m:
                sender, to, kind, body = m.groups()
                out.append({"sender": sender, "to": to, "type": kind, "text": _decode(kind, body)})
        return out

    def settle(self, timeout: float = 20.0) -> list[dict[str, str]]:
        """Wait until the phone side has everything bearerbox sent (its outgoing queue empty and
        fakesmsc's count equal to bearerbox's "sent"), then return :meth:`received`."""
        def done() -> bool:
            m = SENT.search(self.status() or "")
            return bool(m) and m.group(2) == "0" and len(self.received()) >= int(m.group(1))

        self._wait("fakesmsc to receive all bearerbox sent", done, timeout)
        return self.received()

    def to(self, number: str) -> list[dict[str, str]]:
        return [m for m in self.received() if m["to"] == number]

    def mo(self, sender: str, receiver: str, text: str) -> None:
        """An SMS from the phone ``sender`` to our number ``receiver`` (needs ``interactive``)."""
        proc = self.procs["fakesmsc"]
        assert proc.stdin is not None, "Kannel(interactive=True) is needed to send inbound messages"
        proc.stdin.write(f"{sender} {receiver} text {text}\n".encode())
        proc.stdin.flush()


def _decode(kind: str, body: str) -> str:
    if kind == "text":
        return body
    if kind == "ucs-2":
        return urllib.parse.unquote_to_bytes(body.replace("+", "%20")).decode("utf-16-be", "replace")
    if kind == "udh":  # a part of a concatenated message: "<udh> <data>", both urlcoded
        _udh, _, data = body.partition(" ")
        raw = urllib.parse.unquote_to_bytes(data.replace("+", "%20"))
        return raw.decode("latin-1")
    return urllib.parse.unquote_plus(body)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


__all__ = ["Kannel"]
