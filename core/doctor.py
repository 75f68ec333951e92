"""``shopkeeper doctor``: integrity checks of a store, opened read-only, and proof of erasure.

Each check returns a :class:`Check`: a name, how many problems, a one-line summary and the
first few problems in full. The checks read every customer, identity, merge record and
outbox entry once; they change nothing (the store is opened read-only, so a hub may keep
serving it).

**Erased values** (``--erased``). Erasure keeps, per identity, only a *tombstone*: an HMAC of
``namespace\\0value`` keyed with the store's own secret (:func:`shopkeeper.identity.tombstone_key`).
That is not personal data, and it is all doctor needs: every string in every file of the
storage directory — each string a pickle holds (the way values are stored) and every token of
plain text — is hashed the same way, under every identity namespace the store knows, and
looked up among the tombstones. A hit is an erased identity still readable on disk. So the
check needs no list of erased values (which would itself be personal data), at the cost of
hashing every string once per namespace: seconds per 100 MB. It covers identities (what
tombstones record), not free text such as a name inside event data; ``--value`` searches the
files for given values literally, for such cases.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .customer import STATUS_ACTIVE, STATUS_FORGOTTEN, STATUS_MERGED
from .identity import DEFAULT_NAMESPACES
from .outbox import FINAL, PENDING, SENDING, index, outbox_of
from .store import Folders, Store

STATUSES = frozenset({STATUS_ACTIVE, STATUS_MERGED, STATUS_FORGOTTEN})
OUTBOX_STATUSES = frozenset({PENDING, SENDING}) | FINAL
SHOWN = 5  # problems printed per check


@dataclass
class Check:
    name: str
    checked: int = 0
    problems: list[str] = field(default_factory=list)
    count: int = 0
    note: str = ""

    def problem(self, text: str) -> None:
        self.count += 1
        if len(self.problems) < SHOWN:
            self.problems.append(text)

    @property
    def ok(self) -> bool:
        return self.count == 0

    def line(self) -> str:
        what = "ok" if self.ok else f"{self.count} problem(s)"
        note = f"; {self.note}" if self.note else ""
        return f"{self.name:<12} {what:<14} ({self.checked} checked{note})"


def check_customers(f: Folders) -> Check:
    """Every customer loads, has a known status, and a merged one points to a live customer."""
    ck = Check("customers")
    active = 0
    for cid, c in f.customers.items():
        ck.checked += 1
        try:
            c._p_activate()
            status = c.status
        except Exception as exc:  # noqa: BLE001 - a record that does not load is what we look for
            ck.problem(f"customer {cid} does not load: {type(exc).__name__}: {exc}")
            continue
        if c.id != cid:
            ck.problem(f"customer {cid} is stored under its id but says it is {c.id!r}")
        if status not in STATUSES:
            ck.problem(f"customer {cid} has unknown status {status!r}")
        if status == STATUS_ACTIVE:
            active += 1
        if status == STATUS_MERGED and (c.merged_into is None or c.merged_into not in f.customers):
            ck.problem(f"customer {cid} is merged into {c.merged_into!r}, which does not exist")
    counted = f.counter("customers")
    if counted != active:
        ck.problem(f"the customers counter says {counted}, but {active} customers are active")
    return ck


def check_identities(f: Folders) -> Check:
    """The identity index and the customers' own identities agree, both ways."""
    ck = Check("identities")
    for pair, cid in f.identities.items():
        ck.checked += 1
        c = f.customers.get(cid)
        if c is None:
            ck.problem(f"identity {pair[0]}:… points to customer {cid}, which does not exist")
        elif c.status != STATUS_ACTIVE:
            ck.problem(f"identity {pair[0]}:… points to customer {cid}, which is {c.status}")
        elif pair not in c.identities:
            ck.problem(f"identity {pair[0]}:… points to customer {cid}, which does not hold it")
    for cid, c in f.customers.items():
        if c.status != STATUS_ACTIVE:
            if c.status == STATUS_FORGOTTEN and len(c.identities):
                ck.problem(f"forgotten customer {cid} still holds {len(c.identities)} identities")
            continue
        for pair in c.identities.keys():
            if f.identities.get(pair) != cid:
                ck.problem(f"customer {cid} holds identity {pair[0]}:… but the index gives "
                           f"{f.identities.get(pair)!r}")
    return ck


def check_merges(f: Folders) -> Check:
    """Every merge record names two existing customers and matches their state."""
    ck = Check("merges")
    for mid, rec in f.merges.items():
        ck.checked += 1
        survivor, absorbed = f.customers.get(rec.survivor_id), f.customers.get(rec.absorbed_id)
        if survivor is None or absorbed is None:
            ck.problem(f"merge {mid} names a customer that does not exist "
                       f"({rec.survivor_id if survivor is None else rec.absorbed_id})")
            continue
        if rec.undone_at is None:
            if absorbed.status == STATUS_MERGED and absorbed.merged_into is None:
                ck.problem(f"merge {mid}: absorbed {rec.absorbed_id} is merged into nothing")
            if survivor.status == STATUS_ACTIVE and mid not in survivor.merged_from:
                ck.problem(f"merge {mid}: survivor {rec.survivor_id} does not list it")
        elif mid in survivor.merged_from:
            ck.problem(f"merge {mid} was undone, but survivor {rec.survivor_id} still lists it")
    for cid, c in f.customers.items():
        for mid in c.merged_from:
            if mid not in f.merges:
                ck.problem(f"customer {cid} lists merge {mid}, which does not exist")
    return ck


def check_outbox(f: Folders) -> Check:
    """Every intent has a known status, and the index of open intents matches the items."""
    ck = Check("outbox")
    open_items: set[tuple[str, str]] = set()
    for cid, c in f.customers.items():
        box = outbox_of(c)
        if box is None:
            continue
        for iid, item in box.items():
            ck.checked += 1
            if item.status not in OUTBOX_STATUSES:
                ck.problem(f"intent {iid} of customer {cid} has unknown status {item.status!r}")
            elif item.status not in FINAL:
                open_items.add((item.channel, iid))
                if (index(f) or {}).get((item.channel, iid)) != cid:
                    ck.problem(f"open intent {iid} of customer {cid} is missing from the outbox index")
    for key, cid in (index(f) or {}).items():
        c = f.customers.get(cid)
        item = (outbox_of(c) or {}).get(key[1]) if c is not None else None
        if item is None:
            ck.problem(f"the outbox index lists {key} for customer {cid}, which has no such intent")
        elif item.status in FINAL:
            ck.problem(f"the outbox index lists {key} for customer {cid}, but it is {item.status}")
    return ck


# -- erased values ----------------------------------------------------------------------

_PICKLED_SHORT = re.compile(rb"\x8c(.)", re.S)  # SHORT_BINUNICODE: length byte, UTF-8
_PICKLED_LONG = re.compile(rb"X(.{4})", re.S)  # BINUNICODE: 4-byte little-endian length
_TEXT_TOKEN = re.compile(rb"[^\x00-\x20\"'<>,;()\[\]{}\\|]{3,254}")


def strings_in(data: bytes) -> Iterator[str]:
    """Every string a pickle in ``data`` holds, and every token of text around them."""
    for m in _PICKLED_SHORT.finditer(data):
        n, start = m.group(1)[0], m.end()
        yield data[start:start + n].decode("utf-8", "replace")
    for m in _PICKLED_LONG.finditer(data):
        n, start = int.from_bytes(m.group(1), "little"), m.end()
        if n <= 4096:
            yield data[start:start + n].decode("utf-8", "replace")
    for m in _TEXT_TOKEN.finditer(data):
        yield m.group().decode("utf-8", "replace")


def check_erased(f: Folders, directory: Path, values: tuple[str, ...] = ()) -> Check:
    """No tombstoned identity (and none of ``values``) is readable in any file of ``directory``."""
    ck = Check("erased")
    tombstones = set(f.tombstones.keys())
    secret = f.meta["secret"].encode()
    namespaces = set(DEFAULT_NAMESPACES) | {ns for ns, _ in f.identities.keys()}
    keyed = hmac.new(secret, digestmod=hashlib.sha256)
    hashers: list[tuple[str, Any]] = []  # per namespace: the HMAC state after "namespace\0"
    for ns in sorted(namespaces):
        h = keyed.copy()
        h.update(f"{ns}\x00".encode())
        hashers.append((ns, h))
    files = sorted(p for p in directory.iterdir() if p.is_file())
    ck.note = f"{len(tombstones)} tombstones, {len(files)} files, {len(namespaces)} namespaces"
    for path in files:
        data = path.read_bytes()
        ck.checked += 1
        for value in values:
            if value.encode() in data:
                ck.problem(f"{path.name} contains the value {value!r}")
        if not tombstones:
            continue
        seen: set[str] = set()
        for text in strings_in(data):
            if text in seen:
                continue
            seen.add(text)
            raw = text.encode()
            for ns, prefix in hashers:
                h = prefix.copy()
                h.update(raw)
                if h.hexdigest() in tombstones:
                    ck.problem(f"{path.name} still holds an erased {ns} identity ({len(text)} characters)")
    return ck


def run(uri: str, *, erased: bool = False, values: tuple[str, ...] = (), files: str | None = None) -> list[Check]:
    """Every check on the store at ``uri``, opened read-only. ``files``: the directory to scan for
    erased values when the storage's files are not local to the store's URI (a ZEO server's
    directory on this machine); by default the FileStorage's own directory."""
    from .store import StoreOptions

    with Store.open(uri, StoreOptions(read_only=True)) as store, store.read() as f:
        checks = [check_customers(f), check_identities(f), check_merges(f), check_outbox(f)]
        if erased or values:
            file_name = getattr(store.db.storage, "_file_name", None)
            if files is not None:
                checks.append(check_erased(f, Path(files).resolve(), values))
            elif file_name is None:
                ck = Check("erased", note=f"{store.description} keeps no files here to scan (--files DIR)")
                checks.append(ck)
            else:
                checks.append(check_erased(f, Path(file_name).resolve().parent, values))
        return checks
