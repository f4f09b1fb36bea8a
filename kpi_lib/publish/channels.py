"""Slack and Microsoft Teams channels: one short post per scope, through incoming webhooks.

A channel recipient (``{slack: <webhook URL>, role, scopes}`` or ``{teams: ...}`` in the
recipients file, ``kpi_lib.publish.recipients.Channel``) gets, for each scope it may see, the
digest's headline tiles as text (value, target, change; ``digest.scope_tiles``), the
Highlights sentences (``Explainer.sentences``, as the digest and the report say them) and a
link to the report when the recipients file gives ``report_url``. The same scope rules, audit
and ledger as email: a post that names someone outside the channel's scopes is not sent, and a
rerun posts nothing the ledger lists.

Payloads, within each service's documented limits:

- **Slack** (Block Kit through an incoming webhook): ``{"text": <notification text>,
  "blocks": [...]}``, at most 50 blocks; a ``header`` block's plain text at most 150
  characters, a ``section``'s text at most 3,000 and its ``fields`` at most 10 of 2,000 each;
  ``text`` is cut by Slack past 40,000 characters. Slack also refuses block sets around 13,000
  characters in all, so a post is kept under ``SLACK_BUDGET`` by leaving out the last
  sentences ("and 2 more in the report").
- **Teams** (an Adaptive Card through a Workflows "When a Teams webhook request is received"
  flow, or a legacy Incoming Webhook connector): ``{"type": "message", "attachments":
  [{"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": null,
  "content": <AdaptiveCard 1.4>}]}``; a message at most 28 KB (kept under ``TEAMS_BUDGET``).

Webhooks answer 429 (and 5xx) when busy: a post is retried with backoff, waiting what
``Retry-After`` says when it says it (``retry.RetryPolicy``). Webhook URLs are secrets: they
appear in no log line, ledger entry or error message (``kpi_lib.redact``).

Example
-------
>>> post = Post("Sales KPIs October 2026 — Company", [], ["Revenue +12% on Sep 2026."],
...             "Data as of 2026-10-31.", None)
>>> [b["type"] for b in slack_payload(post)["blocks"]]
['header', 'section', 'context']
>>> teams_payload(post)["attachments"][0]["contentType"]
'application/vnd.microsoft.card.adaptive'
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from kpi_lib.metrics.month_to_date import is_partial
from kpi_lib.publish.digest import ReportFile, ScopeSection, Tile, scope_tiles, subject_for
from kpi_lib.publish.ledger import Ledger, now_iso
from kpi_lib.publish.recipients import Channel
from kpi_lib.publish.retry import RetryPolicy, retry_after
from kpi_lib.redact import redact
from kpi_lib.report import theme

SLACK_MAX_BLOCKS = 50
SLACK_HEADER_MAX = 150
SLACK_SECTION_MAX = 3000
SLACK_FIELDS_MAX = 10
SLACK_FIELD_MAX = 2000
SLACK_TEXT_MAX = 40_000
SLACK_BUDGET = 12_000
"""Characters of block text a post stays under (Slack refuses ~13,000 as msg_blocks_too_long)."""
TILE_MAX = 300
"""Characters of one tile's line (its value, target and change fit in far fewer)."""
SENTENCE_MAX = 600
FOOTER_MAX = 500
TEAMS_MAX_BYTES = 28 * 1024
TEAMS_BUDGET = 24_000
"""Bytes of JSON a Teams post stays under (the documented limit is 28 KB)."""
CARD_VERSION = "1.4"
"""Adaptive Card schema version: Teams renders up to 1.5; 1.4 holds every element used here."""
ADAPTIVE = "application/vnd.microsoft.card.adaptive"
TIMEOUT = 30.0


# --------------------------------------------------------------------------------------------
# The message, service-neutral
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Post:
    """One channel message: a title, the tiles, what moved, a footer line and a link."""

    title: str
    tiles: list[Tile]
    sentences: list[str]
    footer: str
    link: str | None = None
    link_text: str = "Open the full report"


def tile_line(t: Tile) -> str:
    """``"$1.2M · 96% of $1.25M target · close to target · ▲ +12% vs Sep 26"`` (no label)."""
    return " · ".join(x for x in (t.value, t.target_line, t.change_line, t.note) if x)


def report_link(report_url: str | None, period_label: str, report: ReportFile) -> str | None:
    """The published address of a report: ``<report_url>/<period>/<role>/<file>.html``."""
    if not report_url:
        return None
    relative = f"{report.role}/{report.path.name}"
    return f"{report_url.rstrip('/')}/{quote(period_label)}/{quote(relative)}"


def scope_post(figures, report: ReportFile, report_url: str | None = None) -> Post:
    """The post for one scope of the batch: its tiles, sentences and the link to its report.

    ``figures`` is the batch's ``digest.Figures``; a month to date carries no sentences (the
    digest leaves them out too: a partial month's drivers are not comparable).
    """
    batch = figures.batch
    theme.use_currency(getattr(batch, "currency", None))
    tiles = scope_tiles(figures, report.scope, report.scope_id)
    partial = is_partial(batch.period, batch.as_of)
    sentences = [] if partial else figures.explain.sentences(report.scope, report.scope_id)
    title = subject_for(batch, [ScopeSection(report, tiles, "")])
    note = (
        f"Month to date: data to {batch.as_of}, compared with the same days of the previous month."
        if partial
        else f"Data as of {batch.as_of}."
    )
    return Post(title, tiles, sentences, note, report_link(report_url, batch.period.label, report))


# --------------------------------------------------------------------------------------------
# Slack: Block Kit
# --------------------------------------------------------------------------------------------


def _slack_escape(text: str) -> str:
    """Text for Slack's mrkdwn: ``&``, ``<`` and ``>`` escaped (no mention or link sneaks in)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slack_payload(post: Post) -> dict:
    """The Block Kit payload of a post, within Slack's limits (module docstring).

    Sentences that do not fit are left out from the last, with a line saying how many.
    """
    sentences = list(post.sentences)
    dropped = 0
    while True:
        payload = _slack(post, sentences, dropped)
        if (
            _slack_size(payload) <= SLACK_BUDGET and len(payload["blocks"]) <= SLACK_MAX_BLOCKS
        ) or not sentences:
            return payload
        sentences.pop()
        dropped += 1


def _slack(post: Post, sentences: list[str], dropped: int) -> dict:
    e = _slack_escape
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(post.title, 150)}}
    ]
    fields = [
        {
            "type": "mrkdwn",
            "text": _cut(f"*{e(_cut(t.label, 100))}*\n{e(_cut(tile_line(t), TILE_MAX))}", 2000),
        }
        for t in post.tiles
    ]
    for i in range(0, len(fields), SLACK_FIELDS_MAX):
        blocks.append({"type": "section", "fields": fields[i : i + SLACK_FIELDS_MAX]})
    lines = [f"• {e(_cut(s, SENTENCE_MAX))}" for s in sentences]
    if dropped:
        lines.append(f"• and {dropped} more in the report")
    chunk = "*What moved*"
    for line in lines:
        line = _cut(line, SLACK_SECTION_MAX - 20)
        if len(chunk) + 1 + len(line) > SLACK_SECTION_MAX:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": chunk}})
            chunk = line
        else:
            chunk += "\n" + line
    if lines:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": chunk}})
    footer = e(_cut(post.footer, FOOTER_MAX))
    if post.link:
        footer += f" <{post.link.replace('|', '%7C').replace('>', '%3E')}|{e(post.link_text)}>"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": footer}]})
    text = (
        post.title + "\n" + "\n".join(f"{t.label}: {_cut(tile_line(t), 200)}" for t in post.tiles)
    )
    return {"text": e(_cut(text, 3000)), "blocks": blocks}  # the notification: mrkdwn too


def _slack_size(payload: dict) -> int:
    """Characters of text in a payload's blocks (what Slack's block-size limit counts)."""
    return len("".join(_strings(payload["blocks"])))


def slack_problems(payload: dict) -> list[str]:
    """Where a Slack payload breaks the documented limits (empty: it is within them)."""
    problems = []
    blocks = payload.get("blocks") or []
    if not isinstance(payload.get("text"), str) or len(payload["text"]) > SLACK_TEXT_MAX:
        problems.append("text missing or over 40,000 characters")
    if not 0 < len(blocks) <= SLACK_MAX_BLOCKS:
        problems.append(f"{len(blocks)} blocks (1 to {SLACK_MAX_BLOCKS} allowed)")
    for i, b in enumerate(blocks):
        kind = b.get("type")
        if kind == "header":
            t = b.get("text", {})
            if t.get("type") != "plain_text" or not 0 < len(t.get("text", "")) <= 150:
                problems.append(f"block {i}: header text must be plain_text of 1-150 characters")
        elif kind == "section":
            if "text" not in b and "fields" not in b:
                problems.append(f"block {i}: a section needs text or fields")
            if "text" in b and not 0 < len(b["text"].get("text", "")) <= SLACK_SECTION_MAX:
                problems.append(f"block {i}: section text over {SLACK_SECTION_MAX} characters")
            fields = b.get("fields", [])
            if len(fields) > SLACK_FIELDS_MAX or any(
                not 0 < len(f.get("text", "")) <= SLACK_FIELD_MAX for f in fields
            ):
                problems.append(f"block {i}: over 10 fields or a field over 2,000 characters")
            for t in [b.get("text"), *fields]:
                if t is not None and t.get("type") not in ("mrkdwn", "plain_text"):
                    problems.append(f"block {i}: a text object of type {t.get('type')!r}")
        elif kind == "context":
            elements = b.get("elements", [])
            if not 0 < len(elements) <= 10:
                problems.append(f"block {i}: a context holds 1 to 10 elements")
        else:
            problems.append(f"block {i}: unexpected block type {kind!r}")
    if _slack_size(payload) > SLACK_BUDGET:
        problems.append(f"{_slack_size(payload)} characters of block text (budget {SLACK_BUDGET})")
    return problems


# --------------------------------------------------------------------------------------------
# Teams: an Adaptive Card
# --------------------------------------------------------------------------------------------


def _teams_text(text: str) -> str:
    """Text for a card's TextBlock: a CRM string cannot become a Markdown link."""
    return str(text).replace("](", "] (")


def teams_payload(post: Post) -> dict:
    """The Teams message (an Adaptive Card in ``attachments``), under ``TEAMS_BUDGET`` bytes."""
    sentences = list(post.sentences)
    dropped = 0
    while True:
        payload = _teams(post, sentences, dropped)
        if teams_size(payload) <= TEAMS_BUDGET or not sentences:
            return payload
        sentences.pop()
        dropped += 1


def _teams(post: Post, sentences: list[str], dropped: int) -> dict:
    t = _teams_text
    body: list[dict] = [
        {
            "type": "TextBlock",
            "text": t(_cut(post.title, 300)),
            "weight": "Bolder",
            "size": "Medium",
            "wrap": True,
        }
    ]
    if post.tiles:
        body.append(
            {
                "type": "FactSet",
                "facts": [
                    {"title": t(_cut(tile.label, 100)), "value": t(_cut(tile_line(tile), TILE_MAX))}
                    for tile in post.tiles
                ],
            }
        )
    lines = [f"- {t(_cut(s, SENTENCE_MAX))}" for s in sentences]
    if dropped:
        lines.append(f"- and {dropped} more in the report")
    if lines:
        body.append({"type": "TextBlock", "text": "What moved", "weight": "Bolder", "wrap": True})
        body.append({"type": "TextBlock", "text": "\n".join(lines), "wrap": True})
    body.append(
        {
            "type": "TextBlock",
            "text": t(post.footer),
            "isSubtle": True,
            "size": "Small",
            "wrap": True,
        }
    )
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "body": body,
    }
    if post.link:
        card["actions"] = [{"type": "Action.OpenUrl", "title": post.link_text, "url": post.link}]
    return {
        "type": "message",
        "attachments": [{"contentType": ADAPTIVE, "contentUrl": None, "content": card}],
    }


def teams_size(payload: dict) -> int:
    return len(json.dumps(payload, ensure_ascii=False).encode("utf-8"))


def teams_problems(payload: dict) -> list[str]:
    """Where a Teams payload breaks the documented shape or limit (empty: it is within them)."""
    problems = []
    if payload.get("type") != "message":
        problems.append('"type" must be "message"')
    attachments = payload.get("attachments")
    if not isinstance(attachments, list) or len(attachments) != 1:
        return [*problems, '"attachments" must hold one card']
    a = attachments[0]
    if a.get("contentType") != ADAPTIVE or "contentUrl" not in a:
        problems.append(f'"contentType" must be {ADAPTIVE}, with "contentUrl"')
    card = a.get("content") or {}
    if card.get("type") != "AdaptiveCard" or card.get("version") not in ("1.4", "1.5"):
        problems.append('"content" must be an AdaptiveCard of version 1.4 or 1.5')
    for i, element in enumerate(card.get("body") or []):
        if element.get("type") not in ("TextBlock", "FactSet"):
            problems.append(f"body {i}: unexpected element {element.get('type')!r}")
        if element.get("type") == "TextBlock" and not element.get("text"):
            problems.append(f"body {i}: a TextBlock needs text")
    for action in card.get("actions") or []:
        if action.get("type") != "Action.OpenUrl" or not action.get("url"):
            problems.append("only Action.OpenUrl with a url is used")
    if teams_size(payload) > TEAMS_MAX_BYTES:
        problems.append(f"{teams_size(payload):,} bytes, over the 28 KB limit")
    return problems


def payload_for(kind: str, post: Post) -> dict:
    return slack_payload(post) if kind == "slack" else teams_payload(post)


def payload_text(payload) -> str:
    """Every text a reader sees in a payload, one per line (what the scope audit reads)."""
    return "\n".join(_strings(payload))


_NOT_TEXT = {"type", "contentType", "contentUrl", "$schema", "version", "url", "size", "weight"}


def _strings(value, key: str = ""):
    if isinstance(value, str):
        if key not in _NOT_TEXT:
            yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v, key)


# --------------------------------------------------------------------------------------------
# Posting: one webhook request, retried
# --------------------------------------------------------------------------------------------


class WebhookError(Exception):
    """A post the webhook did not accept. ``transient``: worth retrying (429, 5xx, no
    connection); ``retry_after``: seconds the service asked to wait. The message never holds
    the URL."""

    def __init__(self, message: str, transient: bool, retry_after: float | None = None):
        super().__init__(redact(message))
        self.transient = transient
        self.retry_after = retry_after


def post_json(url: str, payload: dict, timeout: float = TIMEOUT) -> None:
    """POST ``payload`` as JSON to a webhook; raise ``WebhookError`` unless it answers 2xx.

    A legacy Teams connector answers 200 with ``Microsoft Teams endpoint returned HTTP error
    429`` in its body when throttled: that counts as a 429.
    """
    request = urllib.request.Request(
        url,
        data=json.dumps(payload, ensure_ascii=False).encode("utf-8"),
        headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": "kpi-kit"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(2000).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        body = _body(exc)
        transient = exc.code in (408, 429) or exc.code >= 500
        raise WebhookError(
            f"HTTP {exc.code} {exc.reason}" + (f": {body}" if body else ""),
            transient,
            retry_after(exc.headers.get("Retry-After")) if exc.headers else None,
        ) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise WebhookError(f"no answer from the webhook ({reason})", True) from None
    if "HTTP error 429" in body:
        raise WebhookError("HTTP 429 (in the reply's body): too many requests", True)


def _body(exc: urllib.error.HTTPError) -> str:
    try:
        text = exc.read(300).decode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - the status says enough
        return ""
    return " ".join(text.split())[:200]


def deliver_post(
    url: str,
    payload: dict,
    retry: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] = lambda _: None,
    what: str = "post",
    poster: Callable[[str, dict], None] = post_json,
) -> str | None:
    """Post with retries; None on success, else the error (never the URL).

    A transient failure waits ``Retry-After`` when the service gave one, else the backoff
    delay of the attempt.
    """
    for attempt in range(1, retry.attempts + 1):
        try:
            poster(url, payload)
            return None
        except WebhookError as exc:
            if not exc.transient:
                return str(exc)
            if attempt == retry.attempts:
                return f"{exc} (after {attempt} attempts)"
            wait = exc.retry_after if exc.retry_after is not None else retry.delay(attempt)
            log(f"retry {what} in {wait:g} s (attempt {attempt} of {retry.attempts}): {exc}")
            sleep(wait)
    return "no attempt made"


# --------------------------------------------------------------------------------------------
# A batch's posts to every channel
# --------------------------------------------------------------------------------------------


@dataclass
class ChannelResult:
    """What ``post_channels`` did, one list per outcome (``"<channel> <scope_id>"``)."""

    posted: list[str] = field(default_factory=list)
    already_posted: list[str] = field(default_factory=list)
    held: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def post_channels(
    channels: list[Channel],
    *,
    figures,
    period_dir: Path,
    reports: dict,
    ledger: Ledger,
    batch_key: str,
    auditor_of: Callable[[], object],
    report_url: str | None,
    retry: RetryPolicy,
    hold: str | None = None,
    forced: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] = lambda _: None,
    poster: Callable[[str, dict], None] = post_json,
) -> ChannelResult:
    """Post each channel one message per granted scope with a report, once (ledger).

    ``hold``: a reason to post nothing (a guard held the batch back): each post not yet in
    the ledger is recorded as held. ``forced``: the guards' findings a ``--force-send``
    overrode, recorded with each post. A scope whose report failed is held (the channel's
    other scopes are posted); a post that would name someone outside the channel's scopes
    fails (``kpi_lib.publish.audit``).
    """
    batch = figures.batch
    label = batch.period.label
    teams = set(batch.teams["team_id"].astype(str))
    result = ChannelResult()
    for channel in channels:
        unreachable = None
        pairs = channel.scope_pairs(teams)
        for scope, scope_id in pairs:
            who = f"{channel.label} {scope_id}"
            key = Ledger.post_key(channel.key, batch_key, scope_id)
            if key in ledger:
                result.already_posted.append(who)
                log(f"{label} skip {who}: already posted {ledger.entries[key].get('sent_at', '')}")
                continue
            report = reports.get((scope, scope_id))
            if report is None:
                log(f"{label} skip {who}: no report for this scope this period")
                continue
            if hold is not None:
                ledger.hold(key, hold, channel=channel.label, batch=batch_key, scope=scope_id)
                result.held.append((who, hold))
                continue
            if not report.ok:
                reason = f"report {report.role}/{scope_id} did not render ({report.error})"
                ledger.hold(key, reason, channel=channel.label, batch=batch_key, scope=scope_id)
                result.held.append((who, reason))
                result.failed.append((who, f"not posted: {reason}"))
                log(f"{label} HELD {who}: {reason}")
                continue
            if unreachable:
                result.failed.append((who, f"not attempted: {unreachable}"))
                continue
            payload = payload_for(channel.kind, scope_post(figures, report, report_url))
            auditor = auditor_of()
            leaks = auditor.scan_text(
                payload_text(payload),
                pairs,
                path=channel.label,
                audience=f"{channel.label} ({', '.join(channel.scopes)})",
            )
            if leaks:
                error = "scope leak: " + ", ".join(
                    f"{f.kind} {f.name!r} ({f.entity_id})" for f in leaks[:3]
                )
                result.failed.append((who, error))
                log(f"{label} FAILED {who}: {error}")
                continue
            error = deliver_post(
                channel.url,
                payload,
                retry,
                sleep=sleep,
                log=lambda line: log(f"{label} {line}"),
                what=who,
                poster=poster,
            )
            if error is None:
                entry = {
                    "key": key,
                    "channel": channel.label,
                    "batch": batch_key,
                    "scope": scope_id,
                    "data_fingerprint": batch.fingerprint,
                    "as_of": batch.as_of,
                    "bytes": len(json.dumps(payload, ensure_ascii=False).encode()),
                    "sent_at": now_iso(),
                }
                if forced:
                    entry["forced"] = forced
                ledger.append(entry)
                result.posted.append(who)
                log(f"{label} posted {who}")
            else:
                result.failed.append((who, error))
                log(f"{label} FAILED {who}: {error}")
                if error.endswith(" attempts)"):  # retries ran out: the rest would wait too
                    unreachable = f"{channel.label} unavailable ({error})"
    return result
