"""Who receives which reports: ``params/recipients.yaml``, validated against a batch.

The file names the sender and lists people with their role and the scopes they may see::

    sender: "Sales KPI Kit <kpi-reports@example.com>"
    recipients:
      - {email: ceo@example.com, name: Dana Whitfield, role: executive}          # scopes: [all]
      - {email: nae.lead@example.com, name: Ana Park, role: manager, team_id: na-ent}
      - {email: ana@example.com, name: Ana Lee, role: manager, team_id: na-ent,
         scopes: [na-ent, R001]}                                                # team + a rep
      - {email: javier@example.com, name: Javier Dubois, role: rep, rep_id: R001}

A recipient may also be a chat channel, reached through its incoming webhook: ``{slack: <URL>}``
or ``{teams: <URL>}`` with a ``role``, its ``team_id`` / ``rep_id`` and ``scopes`` like a
person's, and an optional ``name`` that logs and the ledger show (the URL is a secret and is
never shown; ``$KPI_SLACK_SALES`` reads it from that environment variable)::

      - {slack: $KPI_SLACK_NA_ENT, name: "#na-ent-sales", role: manager, team_id: na-ent}
      - {teams: $KPI_TEAMS_LEADERSHIP, name: Leadership, role: executive}

``operators:`` lists the addresses that own the kit: they get one notice when an unattended run
fails, partly fails or is held back (``kpi_lib.publish.operators``); ``report_url:`` is where
the reports folder is published, so channel posts and alerts can link each report.

A scope is a report's ``scope_id``: ``all`` (the company report), a ``team_id`` (the team's
report) or a ``rep_id`` (the rep's report). Executives may see every scope; a manager their
team and the reps of that team; a rep only their own report. Each role's default scopes are
the one report of its own scope. Ids are data: an id that names both a team and a rep means,
for a rep, their own report; for a manager, their team when it is the team they manage, else
the rep; for an executive, the team (``Recipient.scope_pairs``).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from kpi_lib.errors import ParamsError
from kpi_lib.redact import add_secret

ROLES = ("executive", "manager", "rep")
DEFAULT_RECIPIENTS = "params/recipients.yaml"
DEFAULT_SENDER = "Sales KPI Kit <kpi-reports@example.com>"
_EMAIL = re.compile(
    r"^[^@\s<>\"',;]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+$"
)
_ENTRY_KEYS = {"email", "name", "role", "scopes", "team_id", "rep_id"}
CHANNEL_KINDS = ("slack", "teams")
_CHANNEL_KEYS = {"name", "role", "scopes", "team_id", "rep_id"}
_TOP_KEYS = ("sender", "reply_to", "recipients", "operators", "report_url")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class Recipient:
    """One person and the report scopes they receive, in the order the digest shows them.

    Example
    -------
    >>> Recipient("ana@example.com", "Ana Lee", "manager", ("na-ent",), team_id="na-ent").email
    'ana@example.com'
    """

    email: str
    name: str
    role: str
    scopes: tuple[str, ...]
    team_id: str | None = None
    rep_id: str | None = None
    entry: int = field(default=0, compare=False, repr=False)
    """Its place in the file (1-based), for messages."""

    @property
    def label(self) -> str:
        return self.email

    def scope_pairs(self, teams: set[str] | frozenset[str]) -> list[tuple[str, str]]:
        """``(scope, scope_id)`` of every scope this recipient receives, in their order.

        ``teams`` are the team ids of the data: an executive's id that is one means the team.

        Example
        -------
        >>> Recipient("a@x.org", "Ann", "manager", ("east", "r1"), team_id="east").scope_pairs(
        ...     {"east", "west"})
        [('team', 'east'), ('rep', 'r1')]
        """
        return [_scope_pair(self, s, teams) for s in self.scopes]


@dataclass(frozen=True)
class Channel:
    """A Slack or Teams channel that receives posts through its incoming webhook.

    ``url`` is a secret: it is left out of ``repr`` and every message; ``label`` (``slack
    #na-ent-sales``) and ``key`` (what the ledger records) never contain it.

    Example
    -------
    >>> c = Channel("slack", "https://hooks.slack.com/services/T/B/x", "#sales", "executive",
    ...             ("all",))
    >>> c.label, c.key, "hooks" in repr(c)
    ('slack #sales', 'slack:#sales', False)
    """

    kind: str
    url: str = field(repr=False)
    name: str
    role: str
    scopes: tuple[str, ...]
    team_id: str | None = None
    rep_id: str | None = None
    entry: int = field(default=0, compare=False, repr=False)
    named: bool = field(default=True, compare=False, repr=False)

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"

    @property
    def key(self) -> str:
        """The channel in the ledger: its kind and name, or a hash of its URL when unnamed."""
        if self.named:
            return f"{self.kind}:{self.name}"
        return f"{self.kind}:{hashlib.sha256(self.url.encode()).hexdigest()[:16]}"

    def scope_pairs(self, teams: set[str] | frozenset[str]) -> list[tuple[str, str]]:
        """``(scope, scope_id)`` of every scope the channel receives (``Recipient.scope_pairs``)."""
        return [_scope_pair(self, s, teams) for s in self.scopes]


def _scope_pair(person, scope_id: str, teams) -> tuple[str, str]:
    if person.role == "rep":
        return "rep", scope_id
    if person.role == "manager":
        return ("team" if scope_id == person.team_id else "rep"), scope_id
    if scope_id == "all":
        return "company", "all"
    return ("team" if scope_id in teams else "rep"), scope_id


@dataclass(frozen=True)
class RecipientList:
    """The parsed file: the sender address, an optional Reply-To, and the recipients.

    Iterating gives the people (email recipients); ``channels`` are the Slack and Teams
    channels, ``operators`` the addresses that get a notice when a run goes wrong, and
    ``report_url`` the published reports folder (None: posts carry no link).
    """

    recipients: list[Recipient]
    sender: str = DEFAULT_SENDER
    reply_to: str | None = None
    origin: str = DEFAULT_RECIPIENTS
    notes: list[str] = field(default_factory=list)
    channels: list[Channel] = field(default_factory=list)
    operators: list[str] = field(default_factory=list)
    report_url: str | None = None

    def everyone(self) -> list[Recipient | Channel]:
        """People and channels, in the order of the file."""
        return sorted([*self.recipients, *self.channels], key=lambda r: r.entry)

    def __iter__(self):
        return iter(self.recipients)

    def __len__(self) -> int:
        return len(self.recipients)


def load_recipients(path: str | Path = DEFAULT_RECIPIENTS, batch=None) -> RecipientList:
    """Read ``recipients.yaml``; with ``batch``, check every scope against its teams and reps.

    Parameters
    ----------
    path
        The recipients file.
    batch
        A ``kpi_lib.metrics.batch.Batch`` (its ``teams`` and ``reps`` tables); without it only the
        file's shape is checked.

    Raises
    ------
    ParamsError
        Naming the file and the entry: malformed YAML or address, a duplicate address, an
        unknown role or scope, a rep granted another rep or a team, a manager granted another
        team or that team's reps.

    Example
    -------
    >>> rl = load_recipients("params/recipients.yaml")          # doctest: +SKIP
    >>> [r.role for r in rl][:3]                                  # doctest: +SKIP
    ['executive', 'executive', 'manager']
    """
    path = Path(path)
    raw = _read(path)
    sender, operators = _sender_and_operators(raw, path)
    reply_to = raw.get("reply_to")
    if reply_to is not None:
        _check_address(str(reply_to), f"{path}: reply_to")
    report_url = raw.get("report_url")
    if report_url is not None:
        report_url = str(report_url).strip()
        if urlsplit(report_url).scheme not in ("http", "https") or not urlsplit(report_url).netloc:
            raise ParamsError(
                f"{path}: report_url '{report_url}' is not an http(s) URL (the address where "
                "the reports folder is published)"
            )

    recipients, channels, seen, seen_channels = [], [], {}, {}
    for i, entry in enumerate(raw["recipients"], start=1):
        where = f"{path}: recipient {i}"
        if not isinstance(entry, dict):
            raise ParamsError(f"{where}: expected a mapping with email, name, role")
        kinds = [k for k in CHANNEL_KINDS if k in entry]
        if kinds:
            channel = _parse_channel(entry, kinds, where, i)
            for key, what in ((channel.key, "name"), (channel.url, "webhook")):
                if key in seen_channels:
                    raise ParamsError(
                        f"{where} ({channel.label}): same {what} as recipient {seen_channels[key]}"
                    )
                seen_channels[key] = i
            channels.append(channel)
            continue
        if entry.get("email"):
            where += f" ({entry['email']})"
        person = _parse_entry(entry, where, i)
        key = person.email.lower()
        if key in seen:
            raise ParamsError(
                f"{where}: duplicate address, already listed as recipient {seen[key]}"
            )
        seen[key] = i
        recipients.append(person)
    result = RecipientList(
        recipients,
        sender,
        None if reply_to is None else str(reply_to),
        str(path),
        channels=channels,
        operators=operators,
        report_url=report_url,
    )
    if batch is not None:
        validate_recipients(result, batch)
    return result


def _read(path: Path) -> dict:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ParamsError(f"{path}: recipients file not found") from exc
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("recipients"), list):
        raise ParamsError(f"{path}: expected a mapping with a 'recipients:' list")
    unknown = sorted(set(raw) - set(_TOP_KEYS))
    if unknown:
        raise ParamsError(f"{path}: unknown keys {unknown}; known: {', '.join(_TOP_KEYS)}")
    return raw


def _sender_and_operators(raw: dict, path: Path) -> tuple[str, list[str]]:
    sender = str(raw.get("sender") or DEFAULT_SENDER)
    _check_address(sender, f"{path}: sender")
    operators = raw.get("operators") or []
    if isinstance(operators, str) or not isinstance(operators, list):
        raise ParamsError(f"{path}: operators must be a list of addresses")
    operators = [str(o).strip() for o in operators]
    for i, address in enumerate(operators, start=1):
        _check_address(address, f"{path}: operator {i}")
    return sender, operators


def load_operators(path: str | Path) -> tuple[list[str], str]:
    """``(operators, sender)`` of a recipients file, reading nothing else of it.

    A run that stops on bad input still finds whom to tell: a broken recipient entry does not
    keep the operators from their notice. Raises ``ParamsError`` when the file, its sender or
    its ``operators:`` are unreadable.

    Example
    -------
    >>> load_operators("params/recipients.yaml")[0]                   # doctest: +SKIP
    ['Sales Ops <sales-ops@example.com>']
    """
    path = Path(path)
    return _sender_and_operators(_read(path), path)[::-1]


def _parse_channel(entry: dict, kinds: list[str], where: str, index: int) -> Channel:
    """A channel entry; errors name the entry and its ``name``, never the webhook URL."""
    if len(kinds) > 1 or "email" in entry:
        raise ParamsError(f"{where}: an entry is one of an email, a slack or a teams channel")
    kind = kinds[0]
    named = entry.get("name") is not None
    name = str(entry.get("name") if named else f"channel {index}").strip()
    where += f" ({kind} {name})"
    extra = sorted(set(entry) - _CHANNEL_KEYS - {kind})
    if extra:
        raise ParamsError(f"{where}: unknown keys {extra}; known: {sorted(_CHANNEL_KEYS)}")
    url = _webhook_url(entry[kind], where)
    add_secret(url)
    if not name or any(c in name for c in "\r\n\t") or len(name) > 80:
        raise ParamsError(f"{where}: the name must be one line of 1 to 80 characters")
    role, team_id, rep_id, scopes = _role_and_scopes(entry, where)
    return Channel(kind, url, name, role, scopes, team_id, rep_id, entry=index, named=named)


def _webhook_url(value, where: str) -> str:
    """The webhook URL of an entry: the value, or the environment variable ``$NAME`` names.

    Only https, or http to this machine (a test server). The URL never enters a message.
    """
    text = str(value or "").strip()
    match = re.fullmatch(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", text)
    if match:
        text = os.environ.get(match[1], "").strip()
        if not text:
            raise ParamsError(
                f"{where}: the environment variable {match[1]} that should hold the webhook "
                "URL is not set"
            )
    parts = urlsplit(text)
    loopback = parts.scheme == "http" and parts.hostname in _LOOPBACK
    if (
        not (parts.scheme == "https" or loopback)
        or not parts.hostname
        or any(c.isspace() for c in text)
    ):
        raise ParamsError(
            f"{where}: the webhook is not an https:// URL (paste the incoming webhook's URL, "
            "or $VARIABLE to read it from the environment)"
        )
    return text


def _parse_entry(entry: dict, where: str, index: int = 0) -> Recipient:
    extra = sorted(set(entry) - _ENTRY_KEYS)
    if extra:
        raise ParamsError(f"{where}: unknown keys {extra}; known: {sorted(_ENTRY_KEYS)}")
    missing = [k for k in ("email", "name", "role") if not entry.get(k)]
    if missing:
        raise ParamsError(f"{where}: missing {', '.join(missing)}")
    email, name, role = str(entry["email"]).strip(), str(entry["name"]).strip(), entry["role"]
    problem = email_problem(email)
    if problem:
        raise ParamsError(f"{where}: {problem}")
    if any(c in name for c in "\r\n\t") or len(name) > 200:
        raise ParamsError(f"{where}: the name must be one line of at most 200 characters")
    role, team_id, rep_id, scopes = _role_and_scopes(entry, where)
    return Recipient(email, name, role, scopes, team_id, rep_id, entry=index)


def _role_and_scopes(entry: dict, where: str):
    """``(role, team_id, rep_id, scopes)`` of a person's or a channel's entry."""
    role = entry.get("role")
    if not role:
        raise ParamsError(f"{where}: missing role")
    if role not in ROLES:
        raise ParamsError(f"{where}: role '{role}' is not one of {list(ROLES)}")
    team_id = None if entry.get("team_id") is None else str(entry["team_id"])
    rep_id = None if entry.get("rep_id") is None else str(entry["rep_id"])
    if role == "manager" and not team_id:
        raise ParamsError(f"{where}: a manager needs 'team_id:' (the team they manage)")
    if role == "rep" and not rep_id:
        raise ParamsError(f"{where}: a rep needs 'rep_id:' (their own rep id)")
    default = {"executive": ["all"], "manager": [team_id], "rep": [rep_id]}[role]
    scopes = entry.get("scopes", default)
    if isinstance(scopes, str) or not isinstance(scopes, list) or not scopes:
        raise ParamsError(f"{where}: scopes must be a non-empty list of scope ids")
    scopes = [str(s) for s in scopes]
    dupes = sorted({s for s in scopes if scopes.count(s) > 1})
    if dupes:
        raise ParamsError(f"{where}: scopes {dupes} listed more than once")
    return role, team_id, rep_id, tuple(scopes)


def email_problem(email: str) -> str | None:
    """Why ``email`` is not an address a digest can go to, or None when it is one.

    Example
    -------
    >>> email_problem("ana@example.com") is None, email_problem("ana at example")
    (True, "'ana at example' is not an email address (name@example.com)")
    """
    if not _EMAIL.match(email):
        return f"'{email}' is not an email address (name@example.com)"
    return None


def _check_address(text: str, where: str) -> None:
    """A ``Name <a@b.c>`` or bare address, on one line."""
    match = re.fullmatch(r"\s*(?:([^<>\r\n]*?)\s*<([^<>\s]+)>|([^<>\s]+))\s*", text)
    address = match and (match[2] or match[3])
    if not address or not _EMAIL.match(address):
        raise ParamsError(f"{where}: '{text}' is not an address ('Name <name@example.com>')")


def validate_recipients(recipients: RecipientList, batch) -> None:
    """Check every recipient's identity and scopes against the batch's teams and reps.

    Raises ``ParamsError`` naming the file and entry at fault (see ``load_recipients``).
    """
    teams = {str(t) for t in batch.teams["team_id"]}
    team_of = {
        str(r): str(t) for r, t in zip(batch.reps["rep_id"], batch.reps["team_id"], strict=True)
    }
    for i, person in enumerate(recipients.everyone(), start=1):
        where = f"{recipients.origin}: recipient {person.entry or i} ({person.label})"
        if person.role == "manager" and person.team_id not in teams:
            raise ParamsError(f"{where}: team_id '{person.team_id}' is not a team of the data")
        if person.role == "rep" and person.rep_id not in team_of:
            raise ParamsError(f"{where}: rep_id '{person.rep_id}' is not a rep of the data")
        unknown = [s for s in person.scopes if s != "all" and s not in teams | team_of.keys()]
        if unknown:
            raise ParamsError(
                f"{where}: unknown scopes {unknown}; a scope is 'all', a team_id "
                f"({', '.join(sorted(teams)[:4])}, ...) or a rep_id"
            )
        others = [s for s in person.scopes if s != person.rep_id]
        if person.role == "rep" and others:
            raise ParamsError(
                f"{where}: a rep may only see their own report ('{person.rep_id}'), not {others}"
            )
        if person.role != "manager":
            continue
        for kind, s in person.scope_pairs(teams):
            if kind == "rep" and s not in team_of:  # 'all', or another team
                raise ParamsError(
                    f"{where}: a manager of '{person.team_id}' may not see scope '{s}'"
                )
            if kind == "rep" and team_of[s] != person.team_id:
                raise ParamsError(
                    f"{where}: rep '{s}' belongs to team '{team_of[s]}', not to the "
                    f"manager's team '{person.team_id}'"
                )
