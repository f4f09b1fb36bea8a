"""When a run goes wrong, the people who own the kit hear it first: one notice to the operators.

``operators:`` in the recipients file lists them (addresses, ``Name <a@b.c>`` or bare). Every
unattended command (``monthly``, ``mtd``, ``send``) keeps a ``RunRecord`` of what it did: its
log lines and its problems (a report that failed, a digest or post not delivered, a guard that
held the batch back, an error that stopped it). When the run ends with any problem, the
operators get **one** email: what ran, for which period, what failed and why, the tail of the
log, and the command to run again. A run without problems sends nothing.

Without an SMTP host the notice is written where the digests go, as
``<out>/<period>/outbox/operators/notice-<time>.eml``. A notice that cannot be delivered is
said on stderr; it never changes the run's outcome. Everything in it passes through
``kpi_lib.redact`` (no password, no webhook URL).

Whom to tell: the operators of the recipients file the run uses (``--recipients``), else the
org's (named by the rendered batch, or by the source file), else those of the newest batch in
the reports folder, so a run whose source has vanished still finds them.

Example
-------
>>> record = RunRecord("monthly 2026-11", "2026-11", "python -m kpi_lib monthly --today 2026-12-05")
>>> with watched(record, operators=lambda: Operators(["ops@example.com"], "kit@example.com"),
...              smtp=None, outbox=lambda: Path("reports/2026-11/outbox")):  # doctest: +SKIP
...     record.problem("report rep/R007 failed: ValueError: no rep R007")
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid, parseaddr
from pathlib import Path

from kpi_lib.errors import KpiKitError
from kpi_lib.publish.recipients import load_operators
from kpi_lib.publish.retry import RetryPolicy
from kpi_lib.redact import redact

TAIL_LINES = 40
NOTICE_DIR = "operators"


@dataclass(frozen=True)
class Operators:
    """Who gets the notice, the ``From`` address, and the file that named them."""

    addresses: list[str]
    sender: str
    origin: str = ""


def find_operators(
    recipients: str | Path | None = None,
    *,
    out: str | Path = "reports",
    period: str | None = None,
    source=None,
) -> Operators | None:
    """The operators of the run's recipients file (see the module docstring), or None.

    Raises ``KpiKitError`` when the file that should name them cannot be read.
    """
    for path in _candidate_files(recipients, Path(out), period, source):
        addresses, sender = load_operators(path)
        return Operators(addresses, sender, str(path)) if addresses else None
    return None


def _candidate_files(recipients, out: Path, period: str | None, source) -> Iterator[Path]:
    """The recipients file to read the operators from, best first (one is used)."""
    if recipients:
        yield Path(recipients)
        return
    here = [out / period / "_data" / "batch.json"] if period else []
    named = getattr(source, "recipients", None)
    others = sorted(out.glob("*/_data/batch.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in [*here, *([named] if named else []), *others]:
        if path == named:
            yield Path(named)
            return
        try:
            found = json.loads(Path(path).read_text(encoding="utf-8")).get("recipients")
        except (OSError, ValueError, AttributeError):
            continue
        if found and Path(found).is_file():
            yield Path(found)
            return


@dataclass
class RunRecord:
    """What one unattended run did, for its operators: its log lines and its problems.

    ``log`` forwards each line to ``sink`` (stderr, time-stamped by the caller) and keeps the
    last ``TAIL_LINES``; ``problem`` adds one thing that went wrong.
    """

    what: str
    period: str
    rerun: str
    sink: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stderr))
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    problems: list[str] = field(default_factory=list)
    held_back: bool = False
    stopped: bool = False
    notice: str | None = None
    """Where the notice went (``sent to ... via smtp ...`` or the .eml path), once sent."""
    tail: deque = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    hints: list[str] = field(default_factory=list)

    def log(self, line: str) -> None:
        self.tail.append(redact(line))
        self.sink(line)

    def problem(self, text: str) -> None:
        self.problems.append(redact(text))

    def add_render(self, rendered, period_dir: Path | None = None) -> None:
        """Each report that failed, with where its traceback is."""
        for r in getattr(rendered, "failed", []):
            kept = " (its last good page stays)" if r.last_good_html else ""
            self.problem(f"report {r.role}/{r.scope_id} failed{kept}: {r.error}")
            if period_dir is not None:
                log = (Path(period_dir) / r.executed_notebook).with_suffix(".log")
                self.hints.append(f"traceback of {r.role}/{r.scope_id}: {log}")

    def add_send(self, sent) -> None:
        """A guard's hold, and each digest or post not delivered (``send.SendResult``)."""
        if sent.held_back:
            self.held_back = True
            for finding in sent.verdict.findings:
                self.problem(f"held back, nothing sent: {finding}")
        failed = dict(sent.failed)
        for who, why in sent.failed:
            self.problem(f"not delivered to {who}: {why}")
        for who, why in sent.held:
            if who not in failed and not sent.held_back:
                self.problem(f"held back from {who}: {why}")

    def subject(self) -> str:
        if self.stopped:
            state = "stopped"
        elif self.held_back:
            state = "held back, nothing sent"
        else:
            n = len(self.problems)
            state = f"{n} problem{'s' if n != 1 else ''}"
        return f"KPI kit: {self.what} {state}"

    def text(self) -> str:
        """The notice: what ran, the period, what went wrong, how to rerun, the log's tail."""
        lines = [
            f"What ran:  {self.what} on {socket.gethostname()} (pid {os.getpid()}), "
            f"started {self.started_at}",
            f"Period:    {self.period}",
            "",
            "What went wrong:",
            *(f"  - {p}" for p in self.problems),
        ]
        if self.hints:
            lines += ["", *self.hints]
        lines += ["", "To run it again (finished work is not redone, nothing is sent twice):"]
        lines.append(f"  {self.rerun}")
        if self.held_back:
            lines += [
                "The source looked wrong for the period, so nothing went to the recipients.",
                "Check the export first; if the figures are right after all, send anyway with:",
                f"  {self.rerun} --force-send",
            ]
        lines += ["", f"Log (last {len(self.tail)} lines):", *(f"  {x}" for x in self.tail)]
        return redact("\n".join(lines) + "\n")


def notice_message(record: RunRecord, operators: Operators) -> EmailMessage:
    """The operators' notice as an email (plain text)."""
    msg = EmailMessage()
    msg["Subject"] = record.subject()
    msg["From"] = operators.sender
    msg["To"] = ", ".join(operators.addresses)
    msg["Date"] = format_datetime(datetime.now(UTC))
    domain = parseaddr(operators.sender)[1].partition("@")[2] or "kpi-kit.invalid"
    msg["Message-ID"] = make_msgid("kpi-notice", domain=domain)
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-KPI-Notice"] = record.what
    msg.set_content(record.text())
    return msg


def notify(
    record: RunRecord,
    operators: Operators,
    *,
    smtp=None,
    retry: RetryPolicy | None = None,
    outbox: Path,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Deliver the notice (SMTP, else an ``.eml`` in ``outbox/operators/``); where it went.

    Raises ``RuntimeError`` when the server refused it after the retries.
    """
    from kpi_lib.publish.send import SmtpTransport, _deliver

    msg = notice_message(record, operators)
    if smtp is None:
        folder = Path(outbox) / NOTICE_DIR
        folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = folder / f"notice-{stamp}.eml"
        scratch = folder / f".{path.name}.tmp-{os.getpid()}"
        scratch.write_bytes(msg.as_bytes(policy=msg.policy.clone(linesep="\r\n")))
        os.replace(scratch, path)
        return str(path)
    transport = SmtpTransport(smtp)
    sender = parseaddr(operators.sender)[1]
    try:
        errors = []
        for _, address in getaddresses(operators.addresses):
            error, _ = _deliver(
                transport,
                msg,
                sender,
                address,
                retry or RetryPolicy(),
                sleep,
                record.sink,
                "notice",
            )
            if error:
                errors.append(f"{address}: {error}")
    finally:
        transport.close()
    if errors:
        raise RuntimeError("; ".join(errors))
    return f"sent to {', '.join(operators.addresses)} via smtp {smtp.where}"


@contextmanager
def watched(
    record: RunRecord,
    *,
    operators: Callable[[], Operators | None],
    smtp=None,
    retry: RetryPolicy | None = None,
    outbox: Callable[[], Path],
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[RunRecord]:
    """Run the block; at its end, when ``record`` has problems or the block raised, notify the
    operators once. The exception (if any) goes on to the caller.

    ``operators`` and ``outbox`` are called only when a notice is due (the run may have
    found its recipients file, or its period folder, along the way).
    """
    try:
        yield record
    except KpiKitError as exc:
        record.stopped = True
        record.problem(f"stopped: {exc}")
        _tell(record, operators, smtp, retry, outbox, sleep)
        raise
    except Exception as exc:
        record.stopped = True
        record.problem(f"stopped by an internal error ({type(exc).__name__}): {exc}")
        _tell(record, operators, smtp, retry, outbox, sleep)
        raise
    else:
        if record.problems:
            _tell(record, operators, smtp, retry, outbox, sleep)


def _tell(record: RunRecord, operators, smtp, retry, outbox, sleep) -> None:
    """Send the notice; a notice that cannot go out is said on stderr, never raised."""
    try:
        found = operators()
    except KpiKitError as exc:
        if not record.stopped:  # a run stopped on bad input says so in its one error line
            record.sink(f"{record.what}: the operators were not told: {redact(exc)}")
        return
    if found is None:
        if not record.stopped:
            record.sink(f"{record.what}: no operators to tell ('operators:' in recipients)")
        return
    try:
        record.notice = notify(record, found, smtp=smtp, retry=retry, outbox=outbox(), sleep=sleep)
    except Exception as exc:  # noqa: BLE001 - the notice never changes the run's outcome
        record.sink(f"{record.what}: the operators' notice failed: {redact(exc)}")
        return
    record.sink(f"{record.what}: operators notified ({record.notice})")
