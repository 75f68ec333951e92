"""The call-centre adapter's section of the hub config file, and agent passwords.

Example::

    adapters:
      callcentre:
        listen: 0.0.0.0:8710
        cti_token_sha256: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8
        session_secret: <64 random hex digits>   # keeps agents logged in across restarts
        agents:
          a-100: {name: Maria Lopez, password: "scrypt$16384$8$1$…"}

``python -m shopkeeper.adapters.callcentre hash-password`` prints a password hash,
``python -m shopkeeper.hub.config hash TOKEN`` the SHA-256 of the CTI token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field

from ..base import ListenAddress

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_AGENT = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
DEFAULT_DISPOSITIONS = ["resolved", "sale", "follow_up", "complaint", "wrong_number", "other"]


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """``scrypt$N$r$p$salt$hash`` (salt and hash base64): what the config file stores."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${n}${r}${p}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(want), maxmem=128 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


@dataclass(frozen=True)
class Agent:
    id: str
    name: str
    password: str  # scrypt hash


@dataclass
class CallCentreConfig(ListenAddress):
    """Schema of ``adapters.callcentre`` (unknown keys are refused by the adapter base)."""

    #: agent id -> {name, password: scrypt hash}
    agents: dict
    #: SHA-256 (hex) of the bearer token the CTI system sends with each webhook
    cti_token_sha256: str
    listen: str = "127.0.0.1:8710"
    #: HMAC key for session cookies (hex); empty = random per start (agents log in again after a restart)
    session_secret: str = ""
    session_hours: float = 12.0
    #: mark cookies Secure (serve the desk over HTTPS, e.g. behind a proxy)
    secure_cookies: bool = False
    #: how many recent interactions (all channels) the screen-pop shows
    history: int = 12
    #: the Decide placement asked for the next best action
    placement: str = "agent_screen"
    dispositions: list = field(default_factory=lambda: list(DEFAULT_DISPOSITIONS))
    #: login attempts per agent id and per IP: sustained per minute, and burst
    login_per_minute: float = 6.0
    login_burst: int = 10

    def __post_init__(self) -> None:
        if not isinstance(self.agents, dict) or not self.agents:
            raise ValueError("agents: give at least one agent: {a-100: {name: ..., password: scrypt$...}}")
        self.agent_map: dict[str, Agent] = {}
        for aid, spec in self.agents.items():
            if not isinstance(aid, str) or not _AGENT.match(aid):
                raise ValueError(f"agents: agent id {aid!r} must be 1-64 of [A-Za-z0-9_.@-]")
            if isinstance(spec, Agent):
                self.agent_map[aid] = spec
                continue
            if not isinstance(spec, dict) or set(spec) - {"name", "password"}:
                raise ValueError(f"agents: {aid}: must be {{name, password}}")
            pw = spec.get("password")
            if not isinstance(pw, str) or not pw.startswith("scrypt$") or pw.count("$") != 5:
                raise ValueError(f"agents: {aid}.password: must be a scrypt hash "
                                 "(python -m shopkeeper.adapters.callcentre hash-password), never the password")
            self.agent_map[aid] = Agent(aid, str(spec.get("name") or aid), pw)
        if not re.fullmatch(r"[0-9a-fA-F]{64}", self.cti_token_sha256 or ""):
            raise ValueError("cti_token_sha256: must be the 64-hex-digit SHA-256 of the CTI webhook token")
        if self.session_secret and len(self.session_secret) < 32:
            raise ValueError("session_secret: at least 32 characters (or leave empty for a random one)")
        self.check_listen()
        if self.history <= 0 or self.history > 200:
            raise ValueError("history: between 1 and 200")
        if not self.dispositions or not all(isinstance(d, str) and d for d in self.dispositions):
            raise ValueError("dispositions: a non-empty list of names")
