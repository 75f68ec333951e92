"""Shopkeeper: a virtual shopkeeper to millions of customers.

The package is laid out so that the *domain* (``customer``, ``identity``, ``store``,
``ingest``) never imports the transport (gRPC) or the CLI; adapters and the hub build on
the domain, never the other way round.
"""

__version__ = "0.1.0"

from .plugins import hookimpl  # noqa: E402  (the one name plugin authors import)

__all__ = ["__version__", "hookimpl"]
