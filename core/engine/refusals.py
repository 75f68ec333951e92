"""Why the writer refused a job: the exceptions its futures fail with (re-exported by :mod:`.writer`).

Their own module so that callers mapping them to a transport's answer (the gRPC servicers, the
in-process adapters' ``HubError``) can import them without the writer, and the writer stays
under the module cap.
"""

from __future__ import annotations


class DeadlineExpired(Exception):
    """The caller's deadline passed before the writer reached the request: nothing was applied."""


class WriterStopped(Exception):
    """The hub is shutting down and accepts no more writes."""


#: The message of :class:`HubStopping`: what a client does about it (the gRPC servicers answer UNAVAILABLE
#: with it, the HTTP adapters 503 with ``Retry-After``).
STOPPING = "hub is stopping; retry against another hub or after restart"


class HubStopping(WriterStopped):
    """The hub is stopping and this job was never started: nothing of it is committed.

    Retryable: resent with the same idempotency keys (to another hub over the same store, or to
    this one after its restart) it is applied exactly once."""

    def __init__(self, message: str = STOPPING) -> None:
        super().__init__(message)


class PackRunning(Exception):
    """A pack is already running in this process; the message says since when."""


__all__ = ["DeadlineExpired", "WriterStopped", "HubStopping", "STOPPING", "PackRunning"]
