"""Unattended runs for cron or a systemd timer: ``monthly`` and ``mtd`` (month to date).

Both take "today" from ``--today YYYY-MM-DD``, else the ``KPI_TODAY`` environment variable (the
fake clock of the tests), else the real date, and report data through the end of *yesterday*,
the last complete day:

- ``monthly`` renders the last complete month and sends its digests. Run on 2027-01-01 it
  renders 2026-12 (December of the previous year).
- ``mtd`` renders the month that contains yesterday, with ``as_of`` = yesterday, and by
  default sends nothing. Run on the 15th it renders the 1st to the 14th; run on the 1st it
  renders the previous month, which is then complete (the same figures ``monthly`` shows).

A run takes ``<out>/.lock`` (``fcntl.flock``): a second run while one is going exits at once
with code 75 (``EX_TEMPFAIL``) and says who holds the lock. Runs are idempotent: a batch
already rendered with data at least as recent is not rendered again (``rerender=True`` forces
it), and the send ledger skips digests already delivered. One log line per report and per
digest goes to stderr.

Before anything is sent the guards judge the source (``kpi_lib.publish.guards``); after the
render the alert rules run (``kpi_lib.publish.alerts``, opt-in); and when anything went wrong
(a report, a digest, a post, an alert, a guard, an error that stopped the run) the operators
get one notice (``kpi_lib.publish.operators``).
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd

from kpi_lib.metrics.month_to_date import is_partial, month_of, mtd_comparison
from kpi_lib.periods import Period, last_complete_month
from kpi_lib.publish.guards import GuardPolicy, Verdict, check_batch, record_verdict
from kpi_lib.publish.operators import RunRecord, find_operators, watched

DEFAULT_GUARDS = GuardPolicy()

EXIT_LOCKED = 75  # EX_TEMPFAIL: try again later


class RunLocked(Exception):
    """Raised when another run holds ``<out>/.lock``; the message names its pid and start."""


@dataclass(frozen=True)
class Plan:
    """What one scheduled run renders: the period and the last day of data (``as_of``)."""

    kind: str
    period: Period
    as_of: date

    @property
    def partial(self) -> bool:
        return is_partial(self.period, self.as_of)

    @property
    def period_last_day(self) -> date:
        return (self.period.end - pd.Timedelta(days=1)).date()


def monthly_plan(day: date) -> Plan:
    """The last complete month, with data through yesterday.

    Example
    -------
    >>> p = monthly_plan(date(2027, 1, 1)); (p.period.label, p.as_of.isoformat())
    ('2026-12', '2026-12-31')
    """
    return Plan("monthly", last_complete_month(day), day - timedelta(days=1))


def mtd_plan(day: date) -> Plan:
    """The month containing yesterday, through yesterday (on the 1st: the previous month, whole).

    Example
    -------
    >>> p = mtd_plan(date(2026, 11, 15)); (p.period.label, p.as_of.isoformat(), p.partial)
    ('2026-11', '2026-11-14', True)
    >>> p = mtd_plan(date(2026, 11, 1)); (p.period.label, p.as_of.isoformat(), p.partial)
    ('2026-10', '2026-10-31', False)
    """
    as_of = day - timedelta(days=1)
    return Plan("mtd", month_of(as_of), as_of)


@contextmanager
def run_lock(out: str | Path, what: str = "") -> Iterator[Path]:
    """Hold ``<out>/.lock`` for the run; raise ``RunLocked`` at once if another run has it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / ".lock"
    handle = open(path, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another run"
            raise RunLocked(f"{path} is held by {holder}; not starting a second run") from None
        handle.seek(0)
        handle.truncate()
        handle.write(
            f"pid {os.getpid()} ({what or 'kpi_lib'}) since "
            f"{datetime.now().isoformat(timespec='seconds')}\n"
        )
        handle.flush()
        yield path
    finally:
        handle.close()  # closing the descriptor releases the lock


def _stamp_log(line: str) -> None:
    print(f"{datetime.now().isoformat(timespec='seconds')} {line}", file=sys.stderr, flush=True)


def _rendered(period_dir: Path, needed_as_of: date) -> dict | None:
    """The manifest of a complete, failure-free render with data through ``needed_as_of``."""
    manifest = period_dir / "manifest.json"
    if not manifest.is_file() or not (period_dir / "_data" / "batch.json").is_file():
        return None
    data = json.loads(manifest.read_text(encoding="utf-8"))
    if data.get("counts", {}).get("failed", 1) or not data.get("as_of"):
        return None
    return data if str(data["as_of"]) >= needed_as_of.isoformat() else None


@dataclass
class RunResult:
    """The outcome of a scheduled run: its plan, the render, send and alert results (or None),
    the guards' verdict and the run's record (its problems; ``record.notice``: where the
    operators' notice went)."""

    plan: Plan
    rendered: object | None = None  # render.BatchResult when rendered this run
    reused: bool = False
    sent: object | None = None  # send.SendResult when digests were sent or written
    alerts: object | None = None  # alerts.AlertResult when an alerts file applies
    verdict: Verdict | None = None
    record: RunRecord | None = None

    @property
    def held_back(self) -> bool:
        """Whether the guards held the batch back (nothing was sent)."""
        return bool(self.record is not None and self.record.held_back)

    @property
    def failed(self) -> bool:
        render_failed = bool(self.rendered is not None and self.rendered.failed)
        send_failed = bool(self.sent is not None and self.sent.failed)
        alerts_failed = bool(self.alerts is not None and self.alerts.failed)
        return render_failed or send_failed or alerts_failed or self.held_back


def run(
    plan: Plan,
    *,
    source="data/demo.duckdb",
    out: str | Path = "reports",
    send: bool = True,
    recipients: str | Path | None = None,
    smtp=None,
    retry=None,
    jobs: int | None = None,
    targets: str | None = None,
    matrix: str | Path = "params/reports.yaml",
    rerender: bool = False,
    guards: GuardPolicy | None = DEFAULT_GUARDS,
    force_send: bool = False,
    channels: bool = True,
    alerts: str | Path | None = None,
    rerun: str | None = None,
    log: Callable[[str], None] = _stamp_log,
    sleep: Callable[[float], None] = time.sleep,
) -> RunResult:
    """Render the plan's batch (unless a fresh one exists) and, with ``send``, deliver it;
    run the alert rules; tell the operators when anything went wrong.

    Parameters
    ----------
    plan
        ``monthly_plan(today())`` or ``mtd_plan(today())``.
    source
        As for ``render_batch``: a path, a URL, a source file or a ``SourceSpec``.
    recipients, targets
        Files given explicitly; default: the org's own (``kpi_lib.data.org``).
    send
        Deliver the digests (``smtp`` settings, else ``.eml`` files in the outbox).
    rerender
        Render even when ``<out>/<period>/`` already holds a complete batch with data at least
        as recent as the plan's.
    smtp
        ``send.smtp_settings(...)`` for the digests (with ``send``), the alerts and the
        operators' notice; None: ``.eml`` files in ``<out>/<period>/outbox/``.
    guards, force_send
        The guards that hold the sending back when the source looks wrong for the period
        (``kpi_lib.publish.guards``); ``force_send`` sends anyway and the ledger says so.
    channels
        Post to the Slack and Teams channels of the recipients file (with ``send``).
    alerts
        The alert rules (default: ``alerts.yaml`` beside the recipients file, when there is
        one; ``""``: none). Checked before anything is rendered.
    rerun
        The command the operators' notice gives to run again (default: the CLI's, with
        ``--today``).

    Example
    -------
    >>> with run_lock("reports"):                                       # doctest: +SKIP
    ...     result = run(mtd_plan(today()), send=False)
    """
    from kpi_lib.publish.alerts import alerts_file, load_alerts, send_alerts
    from kpi_lib.publish.render import render_batch
    from kpi_lib.publish.send import RetryPolicy, send_batch

    label = plan.period.label
    period_dir = Path(out) / label
    what = f"{plan.kind} {label}"
    needed = min(plan.as_of, plan.period_last_day)
    today = plan.as_of + timedelta(days=1)
    record = RunRecord(
        what, label, rerun or f"python -m kpi_lib {plan.kind} --out {out} --today {today}", log
    )
    log = record.log
    retry = retry or RetryPolicy()
    result = RunResult(plan, record=record)
    if alerts:
        load_alerts(alerts)  # a broken alerts file stops the run before any work
    with watched(
        record,
        operators=lambda: find_operators(recipients, out=out, period=label, source=source),
        smtp=smtp,
        retry=retry,
        outbox=lambda: period_dir / "outbox",
        sleep=sleep,
    ):
        existing = None if rerender else _rendered(period_dir, needed)
        if existing is not None:
            result.reused = True
            log(
                f"{what}: reports already rendered with data as of {existing['as_of']} "
                f"({existing['counts']['ok']} ok); not rendering again"
            )
        else:
            if plan.partial:  # before rendering: every notebook reads it instead of recomputing
                period_dir.mkdir(parents=True, exist_ok=True)
                _write_mtd(source, plan, targets, period_dir)
            rendered = render_batch(
                plan.period,
                source=source,
                out=str(out),
                jobs=jobs,
                as_of=plan.as_of.isoformat(),
                targets=targets,
                progress=False,
                matrix=matrix,
            )
            result.rendered = rendered
            for r in rendered.reports:
                took = f" in {r.seconds:.1f} s" if r.seconds is not None else ""
                error = f": {r.error}" if r.error else ""
                log(f"{what} {r.role}/{r.scope_id} {r.status}{took}{error}")
            log(
                f"{what}: {len(rendered.reports) - len(rendered.failed)} of "
                f"{len(rendered.reports)} reports ok -> {rendered.index_path}"
            )
            record.add_render(rendered, period_dir)
        hold = None
        if send:
            if result.rendered is not None and result.rendered.failed:
                log(
                    f"{what}: some reports failed; their recipients are not sent an incomplete "
                    "digest (the others are)"
                )
            result.sent = send_batch(
                plan.period,
                out=out,
                recipients=recipients,
                smtp=smtp,
                retry=retry,
                guards=guards,
                force_send=force_send,
                channels=channels,
                log=log,
                sleep=sleep,
            )
            log(result.sent.summary())
            record.add_send(result.sent)
            result.verdict = result.sent.verdict
        else:
            result.verdict = check_batch(period_dir, guards) if guards else Verdict(judged=False)
            record_verdict(period_dir, result.verdict, forced=force_send)
            if result.verdict.hold and not force_send:
                record.held_back = True
                for finding in result.verdict.findings:
                    log(f"{what} HELD BACK: {finding}")
                    record.problem(f"held back: {finding}")
        if result.verdict.hold and not force_send:
            hold = f"held back: {result.verdict.reason()}"
        rules = alerts_file(alerts, recipients or _batch_recipients(period_dir))
        if rules is not None:
            result.alerts = send_alerts(
                plan.period,
                out,
                alerts=rules,
                recipients=recipients,
                smtp=smtp,
                retry=retry,
                hold=hold,
                log=log,
                sleep=sleep,
            )
            log(result.alerts.summary())
            for who, why in result.alerts.failed:
                record.problem(f"alert not delivered to {who}: {why}")
    return result


def _batch_recipients(period_dir: Path) -> str | None:
    """The org's recipients file the rendered batch names, if any."""
    try:
        return json.loads((period_dir / "_data" / "batch.json").read_text()).get("recipients")
    except (OSError, ValueError, AttributeError):
        return None


def _write_mtd(source, plan: Plan, targets, period_dir: Path) -> Path:
    """``<period>/mtd.csv``: the to-date comparison the digest and notebooks read."""
    table = mtd_comparison(source, plan.as_of, targets=targets)
    path = period_dir / "mtd.csv"
    scratch = path.with_name(f".mtd.csv.tmp-{os.getpid()}")
    table.to_csv(scratch, index=False)
    os.replace(scratch, path)
    return path
