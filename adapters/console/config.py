"""The console's section of the hub config file.

Example::

    adapters:
      console:
        listen: 127.0.0.1:8720
        session_hours: 8

People log in with one of the hub's API keys that has the ``console`` scope (``admin`` as
well for the unmerge button); the key is exchanged for a session cookie and never stored.
The console serves HTTPS with the hub's own certificate when the hub has ``tls:``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..base import ListenAddress


@dataclass
class ConsoleConfig(ListenAddress):
    """Schema of ``adapters.console`` (unknown keys are refused by the adapter base)."""

    listen: str = "127.0.0.1:8720"
    #: how long a login lasts (sessions live in the hub's memory: a restart logs everyone out)
    session_hours: float = 8.0
    #: interactions per timeline page
    timeline_page: int = 50
    #: customers the segment/outbox pages read at most for their distributions (a sample beyond it)
    sample_customers: int = 20_000
    #: login attempts per IP: sustained per minute, and burst
    login_per_minute: float = 10.0
    login_burst: int = 10
    #: serve over TLS with these instead of the hub's ``tls:`` certificate (empty = the hub's, if any)
    tls_cert: str = ""
    tls_key: str = ""

    def __post_init__(self) -> None:
        self.check_listen()
        if not 0 < self.session_hours <= 24 * 7:
            raise ValueError("session_hours: between 0 and 168")
        if not 1 <= self.timeline_page <= 500:
            raise ValueError("timeline_page: between 1 and 500")
        if not 100 <= self.sample_customers <= 10_000_000:
            raise ValueError("sample_customers: between 100 and 10,000,000")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert, tls_key: give both or neither")
