"""KPI alerts: a short message to a scope's owner when a rule fires, once per rule, scope and period.

Opt-in: without an alerts file nothing is sent. The file (``alerts.yaml`` beside the org's
recipients file, ``params/alerts.yaml`` for the demo, or ``--alerts FILE``) lists rules::

    rules:
      - name: left-normal-range        # the rule's id: letters, digits, - and _
        when: outside_normal_range     # a KPI of the scope left its normal range
        kpis: [revenue, win_rate]      # optional; default: every KPI the reports list
        scopes: [team, rep]            # optional; company, team, rep (default: all three)
      - name: month-behind
        when: below_target             # month to date projects below `share` of the target
        kpis: [revenue]                # (a complete period: finished below it)
        share: 0.8

``outside_normal_range`` fires where the cube's ``unusual`` is true (the value lies outside
the median +/- 2 robust standard deviations of the 12 months before; never for a month not yet
over; ``kpi_lib.metrics.ranges``) and says it as the reports do (``Explainer.unusual``).
``below_target`` fires where the run-rate projection of a month to date
(``kpi_lib.metrics.month_to_date``), or a complete period's value, is below ``share`` of the
target (attainment, so a lower-is-better KPI counts the other way round).

The owner of a scope receives the alert: the executives who see ``all`` for the company, the
team's manager (``team_id``) for a team, the rep (``rep_id``) for a rep; email or channel alike.
Every alert is audited for names outside the owner's scopes, and recorded in the send ledger
under ``alert|<rule>|<scope>|<scope_id>|<period>|<recipient>``: a rerun, or tomorrow's month to
date, sends it no second time. Without an SMTP host the emails are written to
``<out>/<period>/outbox/alerts/``.

The file is checked strictly: unknown keys, rules, KPIs or scopes are errors that name the
file and the rule (exit code 2).

Example
-------
>>> rules = load_alerts("params/alerts.yaml")                          # doctest: +SKIP
>>> result = send_alerts(Period.parse("2026-11"), alerts="params/alerts.yaml")  # doctest: +SKIP
>>> print(result.summary())                                           # doctest: +SKIP
2026-11: 2 alerts fired, 2 sent, 0 already sent earlier, 0 failed
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path

from kpi_lib.errors import KpiKitError, ParamsError
from kpi_lib.metrics.batch import Batch
from kpi_lib.metrics.compare import attainment
from kpi_lib.metrics.month_to_date import is_partial
from kpi_lib.metrics.registry import REGISTRY, get_kpi
from kpi_lib.paths import read_yaml
from kpi_lib.periods import Period
from kpi_lib.publish.audit import Auditor, Directory
from kpi_lib.publish.channels import Post, deliver_post, payload_for, post_json, report_link
from kpi_lib.publish.digest import Figures, load_mtd, locate_reports
from kpi_lib.publish.ledger import Ledger, now_iso
from kpi_lib.publish.recipients import Channel, Recipient, RecipientList, load_recipients
from kpi_lib.publish.retry import RetryPolicy
from kpi_lib.redact import redact
from kpi_lib.report import theme
from kpi_lib.report.explain import NOT_LISTED

WHEN = {
    "outside_normal_range": "a KPI of the scope left its normal range of the last 12 months",
    "below_target": "the month to date projects below a share of the target",
}
SCOPES = ("company", "team", "rep")
_RULE_KEYS = {"name", "when", "kpis", "scopes", "share"}
DEFAULT_SHARE = 0.8
ALERTS_DIR = "alerts"


@dataclass(frozen=True)
class Rule:
    """One rule of the alerts file (see the module docstring)."""

    name: str
    when: str
    kpis: tuple[str, ...] | None = None
    scopes: tuple[str, ...] = SCOPES
    share: float = DEFAULT_SHARE


def load_alerts(path: str | Path) -> list[Rule]:
    """The rules of an alerts file, checked strictly.

    Raises ``ParamsError`` naming the file and the rule: not YAML, unknown keys, an unknown
    ``when``, KPI or scope, a duplicate name, a ``share`` that is not a number above 0.
    """
    path = Path(path)
    raw = read_yaml(path, "alerts file")
    if not isinstance(raw.get("rules"), list):
        raise ParamsError(f"{path}: expected a mapping with a 'rules:' list")
    unknown = sorted(set(raw) - {"rules"})
    if unknown:
        raise ParamsError(f"{path}: unknown keys {unknown}; known: rules")
    rules, seen = [], set()
    for i, entry in enumerate(raw["rules"], start=1):
        where = f"{path}: rule {i}"
        if not isinstance(entry, dict):
            raise ParamsError(f"{where}: expected a mapping with name and when")
        if entry.get("name") is not None:
            where += f" ({entry['name']})"
        extra = sorted(set(entry) - _RULE_KEYS)
        if extra:
            raise ParamsError(f"{where}: unknown keys {extra}; known: {sorted(_RULE_KEYS)}")
        name = str(entry.get("name") or "")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", name):
            raise ParamsError(f"{where}: 'name' must be 1-64 letters, digits, '-' or '_'")
        if name in seen:
            raise ParamsError(f"{where}: a rule named '{name}' is listed already")
        seen.add(name)
        when = entry.get("when")
        if when not in WHEN:
            raise ParamsError(f"{where}: when '{when}' is not one of {sorted(WHEN)}")
        kpis = _names(entry, "kpis", where)
        unknown = [k for k in kpis or () if k.split(":", 1)[0] not in REGISTRY]
        if unknown:
            raise ParamsError(
                f"{where}: unknown KPIs {unknown}; known: {', '.join(sorted(REGISTRY))}"
            )
        scopes = _names(entry, "scopes", where) or SCOPES
        wrong = [s for s in scopes if s not in SCOPES]
        if wrong:
            raise ParamsError(f"{where}: unknown scopes {wrong}; a scope is one of {list(SCOPES)}")
        share = entry.get("share", DEFAULT_SHARE)
        if when != "below_target" and "share" in entry:
            raise ParamsError(f"{where}: 'share' belongs to a below_target rule")
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 10:
            raise ParamsError(f"{where}: share {share!r} must be a number above 0 (0.8 = 80%)")
        rules.append(Rule(name, when, kpis, tuple(scopes), float(share)))
    return rules


def _names(entry: dict, key: str, where: str) -> tuple[str, ...] | None:
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, list) or not value:
        raise ParamsError(f"{where}: '{key}' must be a non-empty list")
    return tuple(str(v) for v in value)


# --------------------------------------------------------------------------------------------
# What fires
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    """One rule that fired for one scope: the lines that say why."""

    rule: Rule
    scope: str
    scope_id: str
    scope_name: str
    period: str
    lines: tuple[str, ...]

    def title(self) -> str:
        what = (
            "a KPI outside its normal range"
            if self.rule.when == "outside_normal_range"
            else "behind target"
        )
        if len(self.lines) > 1 and self.rule.when == "outside_normal_range":
            what = f"{len(self.lines)} KPIs outside their normal range"
        return f"KPI alert: {self.scope_name} — {what} ({theme.month_name(self.period)})"


def evaluate(rules: list[Rule], figures: Figures) -> list[Alert]:
    """Every alert the rules raise on the batch of ``figures``: one per rule x scope at most.

    ``figures.mtd`` (the month-to-date table of a partial month, ``mtd_comparison``) gives
    ``below_target`` its projections.
    """
    batch = figures.batch
    label = batch.period.label
    cube = batch.cube[batch.cube["period"].astype(str) == label]
    alerts = []
    for rule in rules:
        for s in batch.scopes():
            if s.scope not in rule.scopes:
                continue
            if rule.when == "outside_normal_range":
                lines = _outside(rule, figures, cube, s.scope, s.scope_id)
            else:
                lines = _below(rule, figures, s.scope, s.scope_id)
            if lines:
                alerts.append(Alert(rule, s.scope, s.scope_id, s.name, label, tuple(lines)))
    return alerts


def _outside(rule: Rule, figures: Figures, cube, scope: str, scope_id: str) -> list[str]:
    rows = cube[(cube["scope"] == scope) & (cube["scope_id"].astype(str) == scope_id)]
    flagged = [str(k) for k in rows.loc[rows["unusual"].astype(bool), "kpi"]]
    ex = figures.explain
    if rule.kpis is not None:
        flagged = [k for k in flagged if k in rule.kpis or k.split(":", 1)[0] in rule.kpis]
    else:
        flagged = [k for k in flagged if k not in NOT_LISTED and not ex.maturity(k)]
    if not flagged:
        return []
    said = dict(ex.unusual(scope, scope_id))
    lines = []
    for kpi in flagged:
        if kpi in said:
            lines.append(said[kpi])
            continue
        meta = get_kpi(kpi.split(":", 1)[0])
        value = figures.get(kpi, scope, scope_id)
        low = figures.get(kpi, scope, scope_id, field="band_low")
        high = figures.get(kpi, scope, scope_id, field="band_high")
        side = "above" if value > high else "below"
        lines.append(
            f"{meta.label} {theme.format_value(value, meta.unit)}, {side} its normal "
            f"{theme.format_value(low, meta.unit)} to {theme.format_value(high, meta.unit)}"
        )
    return lines


def _below(rule: Rule, figures: Figures, scope: str, scope_id: str) -> list[str]:
    batch = figures.batch
    partial = is_partial(batch.period, batch.as_of)
    lines = []
    for kpi in rule.kpis or ("revenue",):
        meta = get_kpi(kpi.split(":", 1)[0])
        if scope not in meta.scopes:
            continue
        target = figures.get(kpi, scope, scope_id, field="target")
        if partial:
            row = figures.to_date(kpi, scope, scope_id)
            if not row or not meta.additive:
                continue
            value, share = row.get("projection"), row.get("projected_attainment")
            target = row.get("target", target)
            verb = "is projected at"
            tail = " by month end"
        else:
            value = figures.get(kpi, scope, scope_id)
            share = attainment(value, target, meta.higher_is_better)
            verb, tail = "finished at", ""
        if share is None or _missing(share) or _missing(value) or share >= rule.share:
            continue
        lines.append(
            f"{meta.label} {verb} {theme.format_value(value, meta.unit)}{tail}, "
            f"{theme.format_percent(share)} of the {theme.format_value(target, meta.unit)} "
            f"target (alert below {theme.format_percent(rule.share)})"
        )
    return lines


def _missing(x) -> bool:
    try:
        return x is None or math.isnan(float(x))
    except (TypeError, ValueError):
        return True


def owners(people: RecipientList, scope: str, scope_id: str) -> list[Recipient | Channel]:
    """Who owns a scope: executives who see ``all`` (company), the team's manager, the rep."""
    out = []
    for r in people.everyone():
        if scope == "company" and r.role == "executive" and "all" in r.scopes:
            out.append(r)
        elif scope == "team" and r.role == "manager" and r.team_id == scope_id:
            out.append(r)
        elif scope == "rep" and r.role == "rep" and r.rep_id == scope_id:
            out.append(r)
    return out


# --------------------------------------------------------------------------------------------
# Sending
# --------------------------------------------------------------------------------------------


@dataclass
class AlertResult:
    """What ``send_alerts`` did: the alerts that fired, and per delivery its outcome."""

    period: str
    fired: list[Alert] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    already_sent: list[str] = field(default_factory=list)
    held: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    rules_file: str | None = None

    def summary(self) -> str:
        lines = [
            f"{self.period}: {len(self.fired)} alerts fired ({self.rules_file}), "
            f"{len(self.sent)} sent, {len(self.already_sent)} already sent earlier (ledger), "
            + (f"{len(self.held)} held back, " if self.held else "")
            + f"{len(self.failed)} failed"
        ]
        lines += [f"  FAILED alert to {who}: {why}" for who, why in self.failed]
        return "\n".join(lines)


def alerts_file(alerts: str | Path | None, recipients_file: str | Path | None) -> Path | None:
    """The alerts file in use: ``alerts`` when given (``""``: none), else ``alerts.yaml``
    beside the recipients file when it exists."""
    if alerts is not None:
        return Path(alerts) if str(alerts) else None
    if recipients_file:
        beside = Path(recipients_file).parent / "alerts.yaml"
        if beside.is_file():
            return beside
    return None


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def send_alerts(
    period: Period,
    out: str | Path = "reports",
    *,
    alerts: str | Path | None = None,
    recipients: str | Path | None = None,
    smtp=None,
    retry: RetryPolicy | None = None,
    hold: str | None = None,
    log: Callable[[str], None] = _stderr,
    sleep: Callable[[float], None] = time.sleep,
    poster: Callable[[str, dict], None] = post_json,
) -> AlertResult:
    """Evaluate the alert rules on the rendered batch of ``period`` and tell each scope's owner.

    Parameters
    ----------
    period, out
        The rendered batch in ``<out>/<period>/`` (``Period.parse('2026-11')``).
    alerts
        The alerts file; default ``alerts.yaml`` beside the recipients file; ``""``: none.
    recipients
        The recipients file (default: the org's own, as for ``send``).
    smtp
        ``send.smtp_settings(...)``; None writes the emails to ``outbox/alerts/``.
    hold
        A reason to send nothing (the guards held the batch back); alerts are recorded as held.

    Returns
    -------
    AlertResult
        Nothing fired when there is no alerts file.
    """
    from kpi_lib.publish.send import SmtpTransport, _deliver

    label = period.label
    period_dir = Path(out) / label
    if not (period_dir / "_data" / "batch.json").is_file():
        raise KpiKitError(f"no rendered batch in {period_dir} (render {label} first)")
    batch = Batch.load(period_dir / "_data")
    recipients = recipients or batch.recipients
    path = alerts_file(alerts, recipients)
    result = AlertResult(label, rules_file=None if path is None else str(path))
    if path is None:
        return result
    rules = load_alerts(path)
    if not recipients:
        raise KpiKitError(f"{path}: alerts need a recipients file (the scopes' owners)")
    people = load_recipients(recipients, batch)
    theme.use_currency(getattr(batch, "currency", None))
    figures = Figures(batch, load_mtd(period_dir, batch))
    result.fired = evaluate(rules, figures)
    reports = locate_reports(period_dir, batch)
    ledger = Ledger(period_dir / "outbox" / "ledger.jsonl")
    teams = set(batch.teams["team_id"].astype(str))
    auditor = None
    transport = None if smtp is None else SmtpTransport(smtp)
    try:
        for alert in result.fired:
            for owner in owners(people, alert.scope, alert.scope_id):
                who = f"{owner.label} ({alert.rule.name}, {alert.scope_id})"
                key = "|".join(
                    ["alert", alert.rule.name, alert.scope, alert.scope_id, label, _id(owner)]
                )
                if key in ledger:
                    result.already_sent.append(who)
                    log(f"{label} skip alert to {who}: already sent")
                    continue
                if hold is not None:
                    ledger.hold(key, hold, alert=alert.rule.name, scope=alert.scope_id)
                    result.held.append((who, hold))
                    continue
                report = reports.get((alert.scope, alert.scope_id))
                link = report_link(people.report_url, label, report) if report else None
                lines = [*alert.lines, f"Rule '{alert.rule.name}': {WHEN[alert.rule.when]}."]
                if auditor is None:
                    auditor = Auditor(Directory.from_batch(batch))
                leaks = auditor.scan_text(
                    "\n".join([alert.title(), *lines]),
                    owner.scope_pairs(teams),
                    path=who,
                    audience=owner.label,
                )
                if leaks:
                    result.failed.append((who, f"scope leak: {leaks[0].name!r}"))
                    continue
                error = None
                if isinstance(owner, Channel):
                    post = Post(alert.title(), [], lines, f"Data as of {batch.as_of}.", link)
                    error = deliver_post(
                        owner.url,
                        payload_for(owner.kind, post),
                        retry or RetryPolicy(),
                        sleep=sleep,
                        log=lambda line: log(f"{label} {line}"),
                        what=who,
                        poster=poster,
                    )
                else:
                    msg = alert_message(alert, owner, lines, people.sender, link, batch.as_of)
                    if transport is None:
                        where = _write_eml(period_dir / "outbox" / ALERTS_DIR, key, msg)
                        result.sent.append(who)
                        log(f"{label} wrote alert {where}")
                        continue
                    error, _ = _deliver(
                        transport,
                        msg,
                        parseaddr(people.sender)[1],
                        owner.email,
                        retry or RetryPolicy(),
                        sleep,
                        log,
                        label,
                    )
                if error is None:
                    ledger.append(
                        {
                            "key": key,
                            "alert": alert.rule.name,
                            "scope": alert.scope_id,
                            "to": owner.label,
                            "lines": list(alert.lines),
                            "sent_at": now_iso(),
                        }
                    )
                    result.sent.append(who)
                    log(f"{label} alert sent to {who}")
                else:
                    result.failed.append((who, error))
                    log(f"{label} FAILED alert to {who}: {error}")
    finally:
        if transport is not None:
            transport.close()
    return result


def _id(owner: Recipient | Channel) -> str:
    return owner.key if isinstance(owner, Channel) else owner.email.lower()


def alert_message(
    alert: Alert,
    owner: Recipient,
    lines: list[str],
    sender: str,
    link: str | None,
    as_of: str,
) -> EmailMessage:
    """The alert as a short plain-text email."""
    msg = EmailMessage()
    msg["Subject"] = " ".join(alert.title().split())
    name, address = parseaddr(sender)
    user, _, domain = address.partition("@")
    msg["From"] = Address(display_name=" ".join(name.split()), username=user, domain=domain)
    msg["To"] = Address(
        display_name=" ".join(owner.name.split()),
        username=owner.email.partition("@")[0],
        domain=owner.email.partition("@")[2],
    )
    msg["Date"] = format_datetime(datetime.now(UTC))
    digest = hashlib.sha256(
        f"{alert.rule.name}|{alert.scope_id}|{alert.period}|{owner.email}".encode()
    ).hexdigest()
    msg["Message-ID"] = f"<kpi-alert-{digest[:24]}@{domain or 'kpi-kit.invalid'}>"
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-KPI-Alert"] = alert.rule.name
    body = [
        f"Hello {' '.join(owner.name.split())},",
        "",
        f"{alert.scope_name}, {theme.month_name(alert.period)}:",
        *(f"- {line}" for line in lines),
        "",
    ]
    if link:
        body += [f"The report: {link}", ""]
    body += [
        f"Data as of {as_of}. Sent once for this rule, scope and period by the sales KPI kit.",
    ]
    msg.set_content(redact("\n".join(body)) + "\n")
    return msg


def _write_eml(folder: Path, key: str, msg: EmailMessage) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9@._+-]", "_", key.split("|", 1)[1]) + ".eml"
    path = folder / name
    scratch = folder / f".{name}.tmp-{os.getpid()}"
    scratch.write_bytes(msg.as_bytes(policy=msg.policy.clone(linesep="\r\n")))
    os.replace(scratch, path)
    return path
