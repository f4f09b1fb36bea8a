"""Scope audit: no report or digest shows a name that belongs to someone else's scope.

Every rendered report (``<P>/<role>/<scope_id>.html``) and every digest (``<P>/outbox/*.eml``, or a
message about to be sent) is read as text and searched for the names of the batch's reps, teams
and accounts that lie outside its audience's scope:

* a rep's report may name that rep, their team, and the accounts they own or have deals with;
* a team's report may name the team, its reps, and those reps' accounts;
* the company report may name anyone (it is not scanned);
* a digest may name what its recipient's granted scopes may name (``params/recipients.yaml``;
  without it, the scopes the message says it holds, ``X-KPI-Scopes``).

The rule that keeps false positives out (docs/security.md):

1. Text is what a reader sees: HTML tags dropped, entities decoded (``&lt;`` is ``<``), the
   ``alt``/``title``/``aria-label`` attributes kept, whitespace collapsed; an email's subject, its
   plain and HTML bodies and its HTML attachments (PDF attachments are prints of those). A
   report's provenance footer (``kr-footer``: parameters, paths, stamps) is not content and is
   left out: a source path or the word "fingerprint" is not a person.
2. A name matches exactly (case-sensitive) and as a whole: a name that starts or ends with a
   letter or digit must not be glued to another letter or digit (``Ann`` is not in ``Anna``).
3. Occurrences of the scope's own names are found first; a foreign name inside one of them does
   not count (rep ``Lee`` inside own rep ``Ana Lee``).
4. Names and ids that cannot be told apart from ordinary words are not checked: a single word of
   fewer than 4 characters, a single word of the reports' own vocabulary (``COMMON_WORDS``),
   and a foreign name equal to one of the scope's own (two reps called ``Alex Kim``).
5. Names without a letter or digit are not checked, nor those without a letter and with fewer
   than ``MIN_DIGITS`` digits (a team ``0/0`` is the leaderboard's "(0/0)" of an empty rate);
   a long number (a HubSpot owner id) is. Text inside chart images is not checked.

Example
-------
>>> findings = scan_batch("reports", Period.parse("2026-10"))     # doctest: +SKIP
>>> [str(f) for f in findings]                            # doctest: +SKIP
[]
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd

from kpi_lib.errors import KpiKitError
from kpi_lib.periods import Period
from kpi_lib.publish.file_names import report_paths
from kpi_lib.redact import redact

__all__ = [
    "COMMON_WORDS",
    "Directory",
    "Finding",
    "html_text",
    "scan_batch",
    "scan_message",
    "scan_report",
]

MIN_WORD = 4
MIN_DIGITS = 6
"""A name or id without a letter is checked only with at least this many digits."""
COMMON_WORDS = frozenset(
    """
all company team teams rep reps sales total other others none unknown unassigned manager
executive report reports revenue target targets pipeline deals deal won lost open closed
enterprise market mid-market smb commercial direct channel partner partners inbound outbound
north south east west central region global americas emea apac latam europe asia pacific
america new customers customer accounts account leads lead stage stages demo call email
meeting proposal discovery negotiation prospecting qualified qualification contract closing
january february march april may june july august september october november december
about above acquisition active activities activity after again against amount aside
attainment available average became before behind below booked bookings bring calls carrying
change churn close cohorts common conversion cost costs counts coverage created current
cycle dashed data date days demos divided down during each earlier emails estimated events
every exits expect expected failed figures first flow forecast forward from funnel good have
healthy highlights include lacks largest last later leaderboard leaves length level lifetime
likely line logged long main managers manifest many marketing maturing mean median meetings
middle missing month more move moved need needed needs neutral next number numbers
opportunities outlook over overdue paid paying performance period play previous probability
produces projection quality quota ranked rate ratio reach reached recent rendered rest
retention rows rule same share short shown shows simple size some sorted source spend stands
starting step still table takes that their them there they this through thumb time trailed
trend type under value velocity weighted were what where which with without work worth would
writes yardsticks
attached automatically because browser code digest dirty fingerprint full generated hello here
headline html kpis lists months operations parameters print receive recipient reply sent track
""".split()
)
"""Single words that reports and digests print on their own (labels, headings, the glossary,
notes, provenance lines); a name or id that is one of them is not checked."""

_WORD = re.compile(r"\w+")
_SPACE = re.compile(r"\s+")
_KEEP_ATTRS = ("alt", "title", "aria-label")
_FOOTER = "kr-footer"  # a report's provenance footer (``kpi_lib.report.notes``)


# --------------------------------------------------------------------------------------------
# Text as the reader sees it
# --------------------------------------------------------------------------------------------


class _Text(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self.parts.append(" ")
        if tag in ("style", "script") or (
            tag == "footer" and _FOOTER in dict(attrs).get("class", "")
        ):
            self._skip += 1
        for key, value in attrs:
            if key in _KEEP_ATTRS and value:
                self.parts.append(f" {value} ")

    def handle_endtag(self, tag):
        if tag in ("style", "script", "footer") and self._skip:
            self._skip -= 1
        self.parts.append(" ")

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def html_text(markup: str) -> str:
    """The visible text of an HTML page, one space between words.

    Example
    -------
    >>> html_text('<p>Hi <b>Ana&nbsp;Lee</b><img alt="chart of R001"></p>')
    'Hi Ana Lee chart of R001'
    """
    parser = _Text()
    parser.feed(markup)
    parser.close()
    return _norm("".join(parser.parts))


def _norm(text: str) -> str:
    return _SPACE.sub(" ", str(text)).strip()


# --------------------------------------------------------------------------------------------
# Who may see which names
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entity:
    """One name the audit looks for: ``kind`` (rep, team, account), its id and display name."""

    kind: str
    entity_id: str
    name: str


@dataclass
class Directory:
    """Every rep, team and account of a batch, and which scope each belongs to.

    ``team_of`` maps rep -> team; ``account_reps`` maps account -> the reps who own it or have an
    opportunity on it (an account may be owned by one rep and worked by another).
    """

    teams: dict[str, str]
    reps: dict[str, str]
    team_of: dict[str, str]
    accounts: dict[str, str] = field(default_factory=dict)
    account_reps: dict[str, set[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    _rep_accounts: dict[str, set[str]] | None = field(default=None, repr=False)

    @classmethod
    def from_batch(cls, batch, source=None) -> Directory:
        """The directory of a ``kpi_lib.metrics.batch.Batch``; accounts come from ``source`` (default:
        the batch's source), and are left out when it has no accounts table."""
        teams = {
            str(t): _norm(n)
            for t, n in zip(batch.teams["team_id"], batch.teams["team_name"], strict=True)
        }
        reps = {
            str(r): _norm(n)
            for r, n in zip(batch.reps["rep_id"], batch.reps["rep_name"], strict=True)
        }
        team_of = {
            str(r): str(t) for r, t in zip(batch.reps["rep_id"], batch.reps["team_id"], strict=True)
        }
        directory = cls(teams, reps, team_of)
        try:
            tables = _account_tables(source if source is not None else batch.source)
        except (KpiKitError, OSError) as exc:  # a source gone or unreadable: reps and teams only
            directory.notes.append(f"accounts not checked: {redact(exc)}")
        else:
            directory.add_accounts(*tables)
        return directory

    def add_accounts(self, accounts: pd.DataFrame | None, deals: pd.DataFrame | None) -> None:
        """Accounts (``account_id``, ``account_name``, ``owner_rep_id``) and the deals
        (``account_id``, ``owner_rep_id``) that tie more reps to them."""
        if accounts is None or not len(accounts):
            return
        self._rep_accounts = None
        for a, name, owner in zip(
            accounts["account_id"],
            accounts["account_name"],
            accounts.get("owner_rep_id", pd.Series([None] * len(accounts))),
            strict=True,
        ):
            if pd.isna(a) or pd.isna(name):
                continue
            self.accounts[str(a)] = _norm(name)
            if not pd.isna(owner):
                self.account_reps.setdefault(str(a), set()).add(str(owner))
        if deals is not None:
            for a, rep in zip(deals["account_id"], deals["owner_rep_id"], strict=True):
                if not pd.isna(a) and not pd.isna(rep) and str(a) in self.accounts:
                    self.account_reps.setdefault(str(a), set()).add(str(rep))

    def entities(self) -> list[Entity]:
        out = [Entity("team", t, n) for t, n in self.teams.items()]
        out += [Entity("rep", r, n) for r, n in self.reps.items()]
        out += [Entity("account", a, n) for a, n in self.accounts.items()]
        return out

    def reps_in(self, scope: str, scope_id: str) -> set[str]:
        """The reps a scope covers (every rep for the company)."""
        if scope == "company":
            return set(self.reps)
        if scope == "team":
            return {r for r, t in self.team_of.items() if t == scope_id}
        return {scope_id}

    def allowed(self, scopes: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """``{(kind, id)}`` that an audience of these ``(scope, scope_id)`` pairs may see."""
        seen: set[tuple[str, str]] = set()
        for scope, scope_id in scopes:
            reps = self.reps_in(scope, scope_id)
            teams = (
                set(self.teams)
                if scope == "company"
                else {self.team_of.get(r) for r in reps}
                | ({scope_id} if scope == "team" else set())
            )
            seen |= {("rep", r) for r in reps} | {("team", t) for t in teams if t}
            if scope == "company":
                seen |= {("account", a) for a in self.accounts}
            else:
                accounts = self._accounts_of_rep()
                seen |= {("account", a) for r in reps for a in accounts.get(r, ())}
        return seen

    def _accounts_of_rep(self) -> dict[str, set[str]]:
        """``{rep_id: accounts}``: the reverse of ``account_reps``, built once."""
        if self._rep_accounts is None:
            out: dict[str, set[str]] = {}
            for account, owners in self.account_reps.items():
                for rep in owners:
                    out.setdefault(rep, set()).add(account)
            self._rep_accounts = out
        return self._rep_accounts

    def name_of(self, kind: str, entity_id: str) -> str:
        return {"team": self.teams, "rep": self.reps, "account": self.accounts}[kind][entity_id]

    def scope_of(self, scope_id: str) -> tuple[str, str]:
        """``(scope, scope_id)`` of a report's scope id (``all``, a team_id or a rep_id)."""
        if scope_id == "all":
            return "company", "all"
        if scope_id in self.teams:
            return "team", scope_id
        return "rep", scope_id


def _account_tables(source) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """``(accounts, deals)`` of a source; ``(None, None)`` when it has no accounts."""
    from kpi_lib.data.load import load_source
    from kpi_lib.data.source import Source
    from kpi_lib.paths import resolve_source

    src = source if isinstance(source, Source) else load_source(resolve_source(source))
    if not src.has("accounts"):
        return None, None
    accounts = src.table("accounts").select("account_id", "account_name", "owner_rep_id")
    deals = src.table("opportunities").select("account_id", "owner_rep_id").distinct()
    return accounts.to_pandas(), deals.to_pandas()


# --------------------------------------------------------------------------------------------
# Matching
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Needle:
    text: str
    entity: Entity
    lead: int  # offset of the first word character in ``text``
    first: str  # the first word


def _checkable(text: str) -> bool:
    words = _WORD.findall(text)
    if not words:
        return False
    if not any(c.isalpha() for c in text) and sum(c.isdigit() for c in text) < MIN_DIGITS:
        return False  # "0/0", "12", "2026-10" read as numbers: a ratio or a date, not an id
    if len(words) == 1 and words[0] == text:
        return len(text) >= MIN_WORD and text.lower() not in COMMON_WORDS
    return True


def _needles(entities: Iterable[Entity]) -> dict[str, list[_Needle]]:
    """Names and ids to look for, indexed by their first word (longest first)."""
    index: dict[str, list[_Needle]] = {}
    for e in entities:
        for text in {e.name, e.entity_id}:
            text = _norm(text)
            if not _checkable(text):
                continue
            first = _WORD.search(text)
            index.setdefault(first[0], []).append(_Needle(text, e, first.start(), first[0]))
    for group in index.values():
        group.sort(key=lambda n: -len(n.text))
    return index


def _find(text: str, index: dict[str, list[_Needle]]) -> list[tuple[int, int, _Needle]]:
    """Every whole occurrence ``(start, end, needle)`` of an indexed needle in ``text``."""
    hits = []
    for word in _WORD.finditer(text):
        for needle in index.get(word[0], ()):
            start = word.start() - needle.lead
            end = start + len(needle.text)
            if start < 0 or text[start:end] != needle.text:
                continue
            if needle.text[0].isalnum() and start > 0 and text[start - 1].isalnum():
                continue
            if needle.text[-1].isalnum() and end < len(text) and text[end].isalnum():
                continue
            hits.append((start, end, needle))
    return hits


@dataclass(frozen=True)
class Finding:
    """One foreign name in one output: where, for whom, what, and a little context."""

    path: str
    audience: str
    kind: str
    entity_id: str
    name: str
    context: str

    def __str__(self) -> str:
        return (
            f"{self.path}: {self.kind} {self.name!r} ({self.entity_id}) is outside the scope "
            f"of {self.audience}: ...{self.context}..."
        )


class Auditor:
    """Scans texts for the names an audience may not see; one per batch.

    Every name and id is indexed once; a scan finds all of them in the text and keeps those
    outside the audience's scope that no name inside it covers (a foreign account named like an
    own rep is not a leak). Cost per scan: the text's words, whatever the size of the CRM.
    """

    def __init__(self, directory: Directory):
        self.directory = directory
        self._index = _needles(directory.entities())

    def scan_text(
        self, text: str, scopes: Iterable[tuple[str, str]], *, path: str, audience: str
    ) -> list[Finding]:
        """Foreign names in ``text`` for an audience of ``scopes`` (``(scope, scope_id)``)."""
        scopes = frozenset(scopes)
        if any(scope == "company" for scope, _ in scopes):
            return []
        allowed = self.directory.allowed(scopes)
        own_texts = {
            _norm(t).casefold()
            for kind, entity_id in allowed
            for t in (self.directory.name_of(kind, entity_id), entity_id)
        }
        text = _norm(text)
        hits = _find(text, self._index)
        mine = [(h[2].entity.kind, h[2].entity.entity_id) in allowed for h in hits]
        covered = [(s, e) for (s, e, _), own in zip(hits, mine, strict=True) if own]
        findings, reported = [], set()
        for (start, end, needle), own in zip(hits, mine, strict=True):
            if own or _norm(needle.entity.name).casefold() in own_texts:
                continue
            if any(s <= start and end <= e for s, e in covered):
                continue
            key = (needle.entity.kind, needle.entity.entity_id)
            if key in reported:
                continue
            reported.add(key)
            findings.append(
                Finding(
                    path,
                    audience,
                    needle.entity.kind,
                    needle.entity.entity_id,
                    needle.entity.name,
                    text[max(0, start - 40) : end + 40],
                )
            )
        return findings


# --------------------------------------------------------------------------------------------
# Reports and messages
# --------------------------------------------------------------------------------------------


def scan_report(auditor: Auditor, path: Path, scope: str, scope_id: str) -> list[Finding]:
    """Foreign names in one report page of scope ``(scope, scope_id)``."""
    text = html_text(Path(path).read_text(encoding="utf-8", errors="replace"))
    return auditor.scan_text(
        text, [(scope, scope_id)], path=str(path), audience=f"{scope} {scope_id}"
    )


def message_text(msg) -> str:
    """What a recipient can read in a message: subject, bodies and HTML attachments."""
    parts = [str(msg.get("Subject", ""))]
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        if ctype == "text/plain":
            parts.append(part.get_content())
        elif ctype == "text/html":
            parts.append(html_text(part.get_content()))
    return "\n".join(parts)


def scan_message(
    auditor: Auditor,
    msg: EmailMessage,
    scopes: Iterable[tuple[str, str]],
    *,
    path: str = "",
    recipient: str = "",
) -> list[Finding]:
    """Foreign names in one digest for a recipient granted ``scopes``, ``(scope, scope_id)``
    pairs (``Recipient.scope_pairs``)."""
    recipient = recipient or str(msg.get("To", ""))
    scopes = list(scopes)
    return auditor.scan_text(
        message_text(msg),
        scopes,
        path=path or recipient,
        audience=f"recipient {recipient} ({', '.join(s for _, s in scopes)})",
    )


def _reports(period_dir: Path, batch) -> list[tuple[str, str, Path]]:
    """``(scope, scope_id, path)`` of every rendered report (from the manifest when present)."""
    manifest = period_dir / "manifest.json"
    if manifest.is_file():
        rows = json.loads(manifest.read_text(encoding="utf-8")).get("reports", [])
        found = [(r["scope"], str(r["scope_id"]), period_dir / r["html"]) for r in rows]
    else:
        found = [
            (scope, scope_id, period_dir / relative)
            for (scope, scope_id), relative in report_paths(batch.scopes()).items()
        ]
    return [(scope, sid, path) for scope, sid, path in found if path.is_file()]


def scan_batch(
    out_dir: str | Path,
    period: Period,
    *,
    recipients: str | Path | None = None,
    source=None,
    reports: Iterable[tuple[str, str, Path]] | None = None,
    directory: Directory | None = None,
) -> list[Finding]:
    """Every report and every ``.eml`` of ``<out_dir>/<period>/`` scanned for foreign names.

    Parameters
    ----------
    out_dir, period
        The batch: ``reports`` and ``Period.parse("2026-10")`` scan ``reports/2026-10/``.
    recipients
        ``params/recipients.yaml``: a digest is checked against what its recipient is granted.
        Without it, against the scopes the message lists in ``X-KPI-Scopes``.
    source
        Where the accounts come from (default: the batch's source).
    reports
        Only these ``(scope, scope_id, path)`` (default: every report of the manifest).

    Returns
    -------
    list[Finding]
        Empty when nothing leaked.
    """
    from kpi_lib.metrics.batch import Batch
    from kpi_lib.publish.digest import parse_scopes_header

    period_dir = Path(out_dir) / period.label
    batch = Batch.load(period_dir / "_data")
    auditor = Auditor(directory or Directory.from_batch(batch, source))
    findings: list[Finding] = []
    for scope, scope_id, path in reports if reports is not None else _reports(period_dir, batch):
        findings += scan_report(auditor, Path(path), scope, scope_id)
    directory = auditor.directory
    grants: Mapping[str, list[tuple[str, str]]] = {}
    if recipients is not None:
        from kpi_lib.publish.recipients import load_recipients

        teams = set(directory.teams)
        grants = {p.email.lower(): p.scope_pairs(teams) for p in load_recipients(recipients)}
    for eml in sorted((period_dir / "outbox").glob("*.eml")):
        msg = message_from_bytes(eml.read_bytes(), policy=policy.default)
        to = msg["To"].addresses[0].addr_spec.lower() if msg["To"] else ""
        scopes = grants.get(to) or [
            directory.scope_of(s) for s in parse_scopes_header(msg.get("X-KPI-Scopes"))
        ]
        findings += scan_message(auditor, msg, scopes, path=str(eml), recipient=to)
    return findings
