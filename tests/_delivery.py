"""Shared fixtures-in-functions for the delivery tests: a batch with stand-in reports, a
recipients file, and an aiosmtpd server on a free loopback port (``smtp_server``).

The stand-in reports carry their scope id (``data-scope``) and name, so a test can check that a
recipient's attachments hold their scopes and nothing else.
"""

from __future__ import annotations

import html
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path

import yaml

from kpi_lib.periods import Period

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "data" / "demo.duckdb"
PERIOD = "2026-10"
AS_OF = "2026-11-28"

# Who the delivery tests mail: the company, a manager with one of their reps, a rep, another team.
RECIPIENTS = {
    "sender": "Sales KPI Kit <kpi-reports@example.com>",
    "recipients": [
        {"email": "ceo@example.com", "name": "Dana Whitfield", "role": "executive"},
        {
            "email": "nae@example.com",
            "name": "Grace Okafor",
            "role": "manager",
            "team_id": "na-ent",
            "scopes": ["na-ent", "R001"],
        },
        {"email": "r001@example.com", "name": "Javier Dubois", "role": "rep", "rep_id": "R001"},
        {
            "email": "emm@example.com",
            "name": "Jonas Lindqvist",
            "role": "manager",
            "team_id": "emea-mm",
        },
    ],
}
GRANTED = {
    "ceo@example.com": {"all"},
    "nae@example.com": {"na-ent", "R001"},
    "r001@example.com": {"R001"},
    "emm@example.com": {"emea-mm"},
}


def build_batch(folder: Path, period: str = PERIOD, as_of: str = AS_OF) -> Path:
    """``folder/<period>/`` with the demo batch in ``_data`` and one stand-in HTML per scope."""
    if not DEMO.exists():
        from kpi_lib.data.demo import write_demo_data

        write_demo_data(DEMO)
    from kpi_lib.metrics.batch import prepare_batch

    period_dir = folder / period
    batch = prepare_batch(DEMO, Period.parse(period), out_dir=period_dir / "_data", as_of=as_of)
    write_stand_ins(period_dir, batch)
    return period_dir


def write_stand_ins(period_dir: Path, batch) -> None:
    for s in batch.scopes():
        path = period_dir / s.role / f"{s.scope_id}.html"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>'
            f'{html.escape(s.name)}</title></head><body><h1 data-scope="{s.scope_id}">'
            f"Report: {html.escape(s.name)}</h1><p>Stand-in report of {s.scope_id}.</p>"
            "</body></html>",
            encoding="utf-8",
        )


def copy_batch(template: Path, folder: Path) -> Path:
    """A private copy of a prepared ``<period>`` folder (tests write outboxes into it)."""
    target = folder / template.name
    shutil.copytree(template, target)
    return target


def write_recipients(path: Path, data: dict | None = None) -> Path:
    path.write_text(yaml.safe_dump(data or RECIPIENTS, sort_keys=False), encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SmtpInbox:
    """An aiosmtpd handler that keeps every accepted message: ``[(rcpt_tos, bytes)]``."""

    def __init__(self):
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"

    def to(self, address: str) -> list:
        """The parsed messages delivered to ``address``."""
        from email import message_from_bytes, policy

        return [
            message_from_bytes(raw, policy=policy.default)
            for rcpts, raw in self.messages
            if address in rcpts
        ]

    def recipients(self) -> list[str]:
        return sorted(r for rcpts, _ in self.messages for r in rcpts)


@contextmanager
def smtp_server():
    """``(inbox, port)``: a real SMTP server (aiosmtpd) on a free loopback port."""
    from aiosmtpd.controller import Controller

    inbox, port = SmtpInbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()
