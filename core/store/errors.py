"""The store's one exception, in a module of its own so that every part of the store can raise it."""


class StoreError(Exception):
    """A store cannot be opened or used as asked; the message says why."""
