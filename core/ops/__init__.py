"""Operations on a whole store: backup and restore, copying between storages, verification.

Each works on a store a hub may be serving, without going around the hub: backups and copies
only *read* the source storage (a consistent snapshot: a FileStorage read-only up to one
committed transaction, a ZEO server's transaction iterator, a PostgreSQL dump's snapshot), and
restores and copies only *write* to an empty target no hub holds.
"""
