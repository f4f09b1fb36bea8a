"""Deliver a rendered batch's digests: ``.eml`` files (a dry run) or SMTP, never twice.

Without an SMTP host every digest is written to ``<out>/<period>/outbox/<email>.eml`` (atomic
writes; open them in any mail client). With a host each digest is sent, and a ledger,
``<out>/<period>/outbox/ledger.jsonl`` (one JSON line per delivered message, appended and
fsynced right after the server accepted it), records what went out. A rerun skips every
recipient the ledger lists for the same batch, so a crash halfway never double-sends; the one
window left is a kill between the server's acceptance and the fsync (milliseconds), and the
stable ``Message-ID`` lets a mail client fold such a copy into the first.

Transient failures (connection lost, 4xx replies) are retried with exponential backoff;
permanent ones (5xx) are not. The password comes only from the ``KPI_SMTP_PASSWORD``
environment variable and is never written or printed.

Channel recipients (Slack, Teams) get one post per scope through their webhooks, with the same
ledger (``kpi_lib.publish.channels``). Before anything goes out the guards judge the source
(``kpi_lib.publish.guards``): a stale source, a missing table or a shrunken one holds every
digest and post back (``force_send`` overrides, and the ledger says so). A recipient whose
report failed gets no digest; the ledger records why (``"status": "held"``).

Example
-------
>>> result = send_batch(Period.parse("2026-10"))  # writes reports/2026-10/outbox/   # doctest: +SKIP
>>> print(result.summary())                        # doctest: +SKIP
2026-10: 11 digests written to reports/2026-10/outbox, 0 failed
"""

from __future__ import annotations

import fcntl
import os
import re
import smtplib
import ssl
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path

from kpi_lib.data.org import INIT_HINT
from kpi_lib.errors import KpiKitError, ParamsError
from kpi_lib.metrics.batch import Batch
from kpi_lib.periods import Period
from kpi_lib.publish.audit import Auditor, Directory, scan_message
from kpi_lib.publish.channels import post_channels, post_json
from kpi_lib.publish.digest import (
    DigestError,
    Figures,
    PdfPrinter,
    ReportNotRendered,
    batch_key,
    build_digest,
    load_mtd,
    locate_reports,
    parse_scopes_header,
)
from kpi_lib.publish.guards import GuardPolicy, Verdict, check_batch, record_verdict
from kpi_lib.publish.ledger import Ledger, now_iso
from kpi_lib.publish.recipients import load_recipients
from kpi_lib.publish.retry import RetryPolicy

__all__ = [
    "GuardPolicy",
    "Ledger",
    "RetryPolicy",
    "SendResult",
    "SmtpConfigError",
    "SmtpSettings",
    "send_batch",
    "smtp_settings",
]

PASSWORD_ENV = "KPI_SMTP_PASSWORD"
DEFAULT_RETRY = RetryPolicy()
DEFAULT_GUARDS = GuardPolicy()
SECURITY = ("none", "starttls", "ssl")


class SmtpConfigError(KpiKitError):
    """Raised when the SMTP settings are wrong: a password is missing or the server refuses the
    login. The message never contains the password."""


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to send. ``password`` is not shown in ``repr`` and never logged."""

    host: str
    port: int = 25
    security: str = "none"
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


def smtp_settings(
    host: str,
    port: int | None = None,
    security: str = "none",
    user: str | None = None,
    timeout: float = 30.0,
) -> SmtpSettings:
    """SMTP settings with the password taken from ``KPI_SMTP_PASSWORD`` when a user is given.

    The port defaults by security: 465 for ``ssl``, 587 for ``starttls``, 25 otherwise.
    """
    if security not in SECURITY:
        raise ParamsError(f"SMTP security '{security}' is not one of {list(SECURITY)}")
    password = None
    if user:
        password = os.environ.get(PASSWORD_ENV)
        if not password:
            raise SmtpConfigError(
                f"--smtp-user {user} needs the password in the environment variable "
                f"{PASSWORD_ENV} (it is never read from a file or the command line)"
            )
    default_port = {"ssl": 465, "starttls": 587}.get(security, 25)
    return SmtpSettings(host, int(port or default_port), security, user, password, timeout)


class _Transient(Exception):
    """A failure worth retrying (connection lost, 4xx); ``server`` unless it is one mailbox's."""

    def __init__(self, message: str, server: bool = True):
        super().__init__(message)
        self.server = server


class _Permanent(Exception):
    """A failure retrying will not fix (5xx for this message or recipient)."""


class SmtpTransport:
    """One SMTP connection, opened on the first message and reopened after a failure."""

    def __init__(self, settings: SmtpSettings):
        self.settings = settings
        self._smtp: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        context = ssl.create_default_context()
        if s.security == "ssl":
            smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=context)
        else:
            smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            if s.security == "starttls":
                smtp.starttls(context=context)
        if s.user:
            try:
                smtp.login(s.user, s.password or "")
            except smtplib.SMTPAuthenticationError as exc:
                smtp.close()
                raise SmtpConfigError(
                    f"SMTP server {s.where} refused the login of user {s.user} "
                    f"({exc.smtp_code} {_text(exc.smtp_error)})"
                ) from None
            except smtplib.SMTPNotSupportedError:
                smtp.close()
                raise SmtpConfigError(
                    f"SMTP server {s.where} offers no login (AUTH) on this connection; try "
                    "--starttls or --ssl"
                ) from None
        return smtp

    def send(self, msg: EmailMessage, sender: str, recipient: str) -> None:
        """Send one message; raise ``_Transient`` or ``_Permanent`` on failure."""
        try:
            if self._smtp is None:
                self._smtp = self._connect()
            refused = self._smtp.send_message(msg, from_addr=sender, to_addrs=[recipient])
        except SmtpConfigError:
            raise
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()), (550, b"refused"))
            if 400 <= code < 500:
                raise _Transient(f"{code} {_text(text)}", server=False) from None
            raise _Permanent(f"{code} {_text(text)}") from None
        except smtplib.SMTPResponseException as exc:
            self.close()
            raise (_Transient if 400 <= exc.smtp_code < 500 else _Permanent)(
                f"{exc.smtp_code} {_text(exc.smtp_error)}"
            ) from None
        except (TimeoutError, smtplib.SMTPException, OSError) as exc:
            self.close()
            raise _Transient(f"{type(exc).__name__}: {exc}") from None
        if refused:
            code, text = next(iter(refused.values()))
            raise _Permanent(f"{code} {_text(text)}")

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (smtplib.SMTPException, OSError):
                self._smtp.close()
            self._smtp = None


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


# --------------------------------------------------------------------------------------------
# The ledger and the outbox
# --------------------------------------------------------------------------------------------


def eml_name(email: str) -> str:
    """The outbox file of one recipient: ``dana.whitfield@example.com.eml``."""
    return re.sub(r"[^A-Za-z0-9@._+-]", "_", email.lower()) + ".eml"


def write_eml(outbox: Path, email: str, msg: EmailMessage) -> Path:
    """Write the message to ``outbox/<email>.eml`` under a temporary name, then move it."""
    outbox.mkdir(parents=True, exist_ok=True)
    path = outbox / eml_name(email)
    scratch = outbox / f".{path.name}.tmp-{os.getpid()}"
    try:
        scratch.write_bytes(msg.as_bytes(policy=msg.policy.clone(linesep="\r\n")))
        os.replace(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)
    return path


@contextmanager
def _send_lock(outbox: Path):
    """One sender per batch at a time: a second ``send`` of the same period waits its turn."""
    outbox.mkdir(parents=True, exist_ok=True)
    with open(outbox / ".send.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------------
# The batch
# --------------------------------------------------------------------------------------------


@dataclass
class SendResult:
    """What ``send_batch`` did, one list per outcome (recipient addresses)."""

    period: str
    mode: str  # "eml" or "smtp host:port"
    outbox: Path
    sent: list[str] = field(default_factory=list)
    already_sent: list[str] = field(default_factory=list)
    no_reports: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    posted: list[str] = field(default_factory=list)
    """Channel posts, ``"slack #sales na-ent"``."""
    already_posted: list[str] = field(default_factory=list)
    held: list[tuple[str, str]] = field(default_factory=list)
    """Digests and posts deliberately not sent, with why (the ledger has them too)."""
    verdict: Verdict = field(default_factory=lambda: Verdict(judged=False))
    """What the guards found (``verdict.hold``: the source looked wrong)."""
    forced: bool = False
    """Sent although the guards found something (``force_send``)."""

    @property
    def held_back(self) -> bool:
        """Whether the guards held this batch back (nothing was sent)."""
        return self.verdict.hold and not self.forced

    def summary(self) -> str:
        """One line for the batch, then one line per failed recipient."""
        verb = "written to " + str(self.outbox) if self.mode == "eml" else f"sent via {self.mode}"
        parts = [f"{len(self.sent)} digests {verb}"]
        if self.already_sent:
            parts.append(f"{len(self.already_sent)} already sent earlier (ledger)")
        if self.no_reports:
            parts.append(f"{len(self.no_reports)} without a report this period")
        if self.posted or self.already_posted:
            parts.append(f"{len(self.posted)} channel posts")
        if self.already_posted:
            parts.append(f"{len(self.already_posted)} posted earlier (ledger)")
        if self.held:
            parts.append(f"{len(self.held)} held back")
        parts.append(f"{len(self.failed)} failed")
        lines = [f"{self.period}: " + ", ".join(parts)]
        if self.held_back:
            lines.append("  HELD BACK, nothing sent: the source looks wrong for the period")
            lines += [f"    {finding}" for finding in self.verdict.findings]
            lines.append("  check the source; to send anyway, rerun with --force-send")
        elif self.forced:
            lines.append("  SENT WITH --force-send although: " + self.verdict.reason())
        lines += [f"  warning: {w}" for w in self.warnings]
        lines += [f"  FAILED {email}: {error}" for email, error in self.failed]
        if self.failed:
            lines.append("  rerun the same command to retry; the ledger skips what was sent")
        return "\n".join(lines)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def send_batch(
    period: Period,
    out: str | Path = "reports",
    recipients: str | Path | None = None,
    smtp: SmtpSettings | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
    *,
    guards: GuardPolicy | None = DEFAULT_GUARDS,
    force_send: bool = False,
    channels: bool = True,
    log: Callable[[str], None] = _stderr,
    sleep: Callable[[float], None] = time.sleep,
    poster: Callable[[str, dict], None] = post_json,
) -> SendResult:
    """Build and deliver every recipient's digest of the batch in ``<out>/<period>/``, and
    post each channel recipient its scopes.

    Parameters
    ----------
    period
        The rendered period (``'2026-10'``); its batch must be in ``<out>/<period>/_data``.
    out
        The reports folder.
    recipients
        A recipients file; default: the org's own (``kpi_lib.data.org``; ``params/recipients.yaml``
        for the demo). Validated against the batch before anything is sent.
    smtp
        ``smtp_settings(...)``; ``None`` writes ``.eml`` files to ``<out>/<period>/outbox/``.
    retry
        Backoff for transient failures (a webhook's ``Retry-After`` wins when given).
    guards
        When the source looks wrong for the period (``kpi_lib.publish.guards``: stale, a
        table missing or shrunken against the last batch), nothing is sent; every digest and
        post is recorded as held in the ledger. ``None``: no guards.
    force_send
        Send although the guards found something; each ledger entry records what was
        overridden (``"forced"``).
    channels
        Post to the Slack and Teams channels of the recipients file (``False``: email only).
    log
        Receives one line per recipient (default: stderr).
    sleep, poster
        Stand-ins for the tests (the wait between retries, one webhook request).

    Returns
    -------
    SendResult
        ``result.failed`` is empty when every digest went out.

    Raises
    ------
    KpiKitError
        No rendered batch, a bad recipients file, bad SMTP settings or a refused login.
    """
    label = period.label
    period_dir = Path(out) / label
    data_dir = period_dir / "_data"
    if not (data_dir / "batch.json").is_file():
        raise KpiKitError(
            f"no rendered batch in {period_dir} (run `python -m kpi_lib render "
            f"--period {label} --out {out}` first)"
        )
    batch = Batch.load(data_dir)
    recipients = recipients or batch.recipients
    if not recipients:
        raise KpiKitError(
            f"no recipients for the org of {batch.source}: name a recipients file with "
            f"--recipients, or in its source file ({INIT_HINT})"
        )
    people = load_recipients(recipients, batch)
    outbox = period_dir / "outbox"
    reports = locate_reports(period_dir, batch)
    figures = Figures(batch, load_mtd(period_dir, batch))
    key = batch_key(batch)
    sender = parseaddr(people.sender)[1]
    result = SendResult(label, "eml" if smtp is None else f"smtp {smtp.where}", outbox)
    transport = None if smtp is None else SmtpTransport(smtp)
    unreachable: str | None = None
    auditor: Auditor | None = None

    result.verdict = check_batch(period_dir, guards) if guards else Verdict(judged=False)
    result.forced = result.verdict.hold and force_send
    record_verdict(period_dir, result.verdict, forced=force_send)
    hold = f"held back: {result.verdict.reason()}" if result.held_back else None
    forced = result.verdict.reason() if result.forced else None
    for finding in result.verdict.findings:
        log(f"{label} {'FORCED past' if forced else 'HELD BACK'}: {finding}")

    def auditor_of() -> Auditor:
        nonlocal auditor
        if auditor is None:
            auditor = Auditor(Directory.from_batch(batch))
        return auditor

    with _send_lock(outbox), PdfPrinter() as pdf:
        ledger = Ledger(outbox / "ledger.jsonl")
        pdf_note = None
        try:
            for person in people:
                entry_key = Ledger.key(person.email, key)
                if transport is not None and entry_key in ledger:
                    result.already_sent.append(person.email)
                    log(
                        f"{label} skip {person.email}: already sent "
                        f"{ledger.entries[entry_key].get('sent_at', '')}"
                    )
                    continue
                if hold is not None:
                    ledger.hold(entry_key, hold, email=person.email, batch=key)
                    result.held.append((person.email, hold))
                    continue
                if unreachable:
                    result.failed.append((person.email, f"not attempted: {unreachable}"))
                    continue
                try:
                    msg = build_digest(
                        person,
                        batch,
                        period_dir,
                        pdf=pdf,
                        sender=people.sender,
                        reply_to=people.reply_to,
                        reports=reports,
                        figures=figures,
                    )
                except ReportNotRendered as exc:  # never an incomplete digest; say why
                    ledger.hold(entry_key, str(exc), email=person.email, batch=key)
                    result.held.append((person.email, str(exc)))
                    result.failed.append((person.email, str(exc)))
                    log(f"{label} HELD {person.email}: {exc}")
                    continue
                except DigestError as exc:
                    result.failed.append((person.email, str(exc)))
                    log(f"{label} FAILED {person.email}: {exc}")
                    continue
                if msg is None:
                    result.no_reports.append(person.email)
                    log(
                        f"{label} skip {person.email}: none of {list(person.scopes)} has a "
                        "report this period"
                    )
                    continue
                if pdf.missing and pdf_note is None:
                    pdf_note = f"digests carry the HTML report without its PDF: {pdf.missing}"
                    result.warnings.append(pdf_note)
                    log(f"{label} warning: {pdf_note}")
                leaks = scan_message(
                    auditor_of(),
                    msg,
                    person.scope_pairs(set(auditor.directory.teams)),
                    recipient=person.email,
                )
                if leaks:  # never deliver a digest that names someone outside its scopes
                    error = (
                        "scope leak: "
                        + ", ".join(f"{f.kind} {f.name!r} ({f.entity_id})" for f in leaks[:3])
                        + (f" and {len(leaks) - 3} more" if len(leaks) > 3 else "")
                    )
                    result.failed.append((person.email, error))
                    log(f"{label} FAILED {person.email}: {error}")
                    continue
                size = len(msg.as_bytes())
                if transport is None:
                    path = write_eml(outbox, person.email, msg)
                    result.sent.append(person.email)
                    log(f"{label} wrote {path} ({size / 1024:.0f} KB, {msg['X-KPI-Scopes']})")
                    continue
                error, server_down = _deliver(
                    transport, msg, sender, person.email, retry, sleep, log, label
                )
                if error is None:
                    ledger.append(
                        {
                            "key": entry_key,
                            "email": person.email,
                            "batch": key,
                            "scopes": parse_scopes_header(msg["X-KPI-Scopes"]),
                            "pdf": "attached" if pdf.missing is None else f"missing: {pdf.missing}",
                            "message_id": msg["Message-ID"],
                            "data_fingerprint": batch.fingerprint,
                            "as_of": batch.as_of,
                            "server": smtp.where,
                            "bytes": size,
                            "sent_at": now_iso(),
                            **({"forced": forced} if forced else {}),
                        }
                    )
                    result.sent.append(person.email)
                    log(
                        f"{label} sent {person.email} ({size / 1024:.0f} KB, {msg['X-KPI-Scopes']})"
                    )
                else:
                    result.failed.append((person.email, error))
                    log(f"{label} FAILED {person.email}: {error}")
                    if server_down:  # retries exhausted on the server itself: stop here
                        unreachable = f"SMTP server {smtp.where} unavailable ({error})"
        finally:
            if transport is not None:
                transport.close()
        if channels and people.channels:
            posts = post_channels(
                people.channels,
                figures=figures,
                period_dir=period_dir,
                reports=reports,
                ledger=ledger,
                batch_key=key,
                auditor_of=auditor_of,
                report_url=people.report_url,
                retry=retry,
                hold=hold,
                forced=forced,
                sleep=sleep,
                log=log,
                poster=poster,
            )
            result.posted += posts.posted
            result.already_posted += posts.already_posted
            result.held += posts.held
            result.failed += posts.failed
    return result


def _deliver(
    transport: SmtpTransport,
    msg: EmailMessage,
    sender: str,
    to: str,
    retry: RetryPolicy,
    sleep,
    log,
    label: str,
) -> tuple[str | None, bool]:
    """Send with retries: ``(None, False)`` on success, else ``(error, server_down)``.

    ``server_down`` is true when the retries ran out on a server-level failure (connection,
    4xx for the session), so the remaining recipients are not attempted in this run.
    """
    for attempt in range(1, retry.attempts + 1):
        try:
            transport.send(msg, sender, to)
            return None, False
        except _Permanent as exc:
            return str(exc), False
        except _Transient as exc:
            if attempt == retry.attempts:
                return f"{exc} (after {attempt} attempts)", exc.server
            wait = retry.delay(attempt)
            log(f"{label} retry {to} in {wait:g} s (attempt {attempt} of {retry.attempts}): {exc}")
            sleep(wait)
    return "no attempt made", False
