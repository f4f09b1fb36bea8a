"""The send ledger: ``<out>/<period>/outbox/ledger.jsonl``, what went out and what was held.

One JSON line per delivered message (a digest, a channel post, an alert), appended and fsynced
right after the server or webhook accepted it; a rerun skips every key the ledger lists, so
nothing is delivered twice. Lines with ``"status": "held"`` record what was deliberately not
sent and why (a report that failed, a guard that held the batch back); they never count as
delivered. A torn last line (a kill mid-write) is ignored when read.

Keys: ``<email>|<batch key>`` for a digest, ``<channel key>|<batch key>|<scope_id>`` for a
channel post, ``alert|<rule>|<scope>|<scope_id>|<period>|<recipient>`` for an alert.

Example
-------
>>> ledger = Ledger("reports/2026-10/outbox/ledger.jsonl")          # doctest: +SKIP
>>> Ledger.key("Ana@example.com", "2026-10/final") in ledger        # doctest: +SKIP
True
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

HELD = "held"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Ledger:
    """``outbox/ledger.jsonl``: ``entries`` holds what was delivered, by key; ``held`` the last
    reason each key was held back (until it is delivered)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.entries: dict[str, dict] = {}
        self.held: dict[str, dict] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    key = entry["key"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue
                if entry.get("status") == HELD:
                    self.held[key] = entry
                else:
                    self.entries[key] = entry
                    self.held.pop(key, None)

    @staticmethod
    def key(email: str, batch: str) -> str:
        return f"{email.lower()}|{batch}"

    @staticmethod
    def post_key(channel_key: str, batch: str, scope_id: str) -> str:
        return f"{channel_key}|{batch}|{scope_id}"

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def append(self, entry: dict) -> None:
        """Append one line and fsync it before returning."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(entry, sort_keys=True) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        if entry.get("status") == HELD:
            self.held[entry["key"]] = entry
        else:
            self.entries[entry["key"]] = entry
            self.held.pop(entry["key"], None)

    def hold(self, key: str, reason: str, **fields) -> None:
        """Record that ``key`` was not sent this run, and why."""
        self.append({"key": key, "status": HELD, "reason": reason, "at": now_iso(), **fields})
