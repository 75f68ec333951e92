"""Vendor CRM contact sync: CSV files dropped in a folder become Shopkeeper customers.

Written only against the public adapter API (``shopkeeper.adapters.base``), so it runs inside
the hub or as its own process (``shopkeeper adapter run vendorcrm``) unchanged.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
from pathlib import Path

from shopkeeper import hookimpl
from shopkeeper.adapters.base import Adapter

__version__ = "0.1.0"


@dataclasses.dataclass
class VendorCrmConfig:
    inbox: str  # folder the CRM exports CSV files to (written atomically: *.part, then renamed)
    poll_seconds: float = 2.0
    done_suffix: str = ".done"  # processed files are renamed with this suffix

    def __post_init__(self) -> None:
        if self.poll_seconds <= 0:
            raise ValueError("poll_seconds: must be positive")


class VendorCrmAdapter(Adapter):
    name = "vendorcrm"
    version = __version__
    Config = VendorCrmConfig
    event_types = ("identify",)  # checked against the hub at start

    def start(self) -> None:
        Path(self.config.inbox).mkdir(parents=True, exist_ok=True)
        self._spawn(self._poll, name="vendorcrm-poll")
        super().start()

    def _poll(self) -> None:
        while not self.stopping:
            for path in sorted(Path(self.config.inbox).glob("*.csv")):
                self.sync_file(path)
            self._stop.wait(self.config.poll_seconds)

    def sync_file(self, path: Path) -> int:
        """Record every contact in ``path``; rename it ``*.done`` once all are committed."""
        events, consents = [], []
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                crm_id, email = (row.get("crm_id") or "").strip(), (row.get("email") or "").strip()
                if not crm_id:
                    continue
                ids = {"crm_id": crm_id, **({"email": email} if email else {})}
                traits = {k: row[k] for k in ("first_name", "last_name") if row.get(k)}
                digest = hashlib.sha256(repr(sorted(row.items())).encode()).hexdigest()[:32]
                events.append({"type": "identify", "channel": "crm", "identities": ids, "traits": traits,
                               "idempotency_key": f"vendorcrm:{digest}", "data": {"source_file": path.name}})
                if row.get("email_opt_in", "").strip().lower() in ("yes", "true", "1", "no", "false", "0"):
                    consents.append((crm_id, row["email_opt_in"].strip().lower() in ("yes", "true", "1")))
        results = self.hub.record(events) if events else []
        bad = [r for r in results if r["status"] == "rejected"]
        for r in bad:
            self.log.warning("vendorcrm: %s row %d rejected: %s", path.name, r["index"] + 2, r["error"])
        for crm_id, granted in consents:
            self.hub.set_consent(("crm_id", crm_id), "email", "marketing", granted, "vendorcrm")
        path.rename(path.with_name(path.name + self.config.done_suffix))
        return len(results) - len(bad)


@hookimpl
def shopkeeper_adapters() -> list[type]:
    return [VendorCrmAdapter]
