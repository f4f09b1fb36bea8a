"""Who receives which reports: ``params/recipients.yaml``, validated against a batch.

The file names the sender and lists people with their role and the scopes they may see::

    sender: "Sales KPI Kit <kpi-reports@example.com>"
    recipients:
      - {email: ceo@example.com, name: Dana Whitfield, role: executive}          # scopes: [all]
      - {email: nae.lead@example.com, name: Ana Park, role: manager, team_id: na-ent}
      - {email: ana@example.com, name: Ana Lee, role: manager, team_id: na-ent,
         scopes: [na-ent, R001]}                                                # team + a rep
      - {email: javier@example.com, name: Javier Dubois, role: rep, rep_id: R001}

A scope is a report's ``scope_id``: ``all`` (the company report), a ``team_id`` (the team's
report) or a ``rep_id`` (the rep's report). Executives may see every scope; a manager their
team and the reps of that team; a rep only their own report. Each role's default scopes are
the one report of its own scope. Ids are data: an id that names both a team and a rep means,
for a rep, their own report; for a manager, their team when it is the team they manage, else
the rep; for an executive, the team (``Recipient.scope_pairs``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kpi_lib.errors import ParamsError

ROLES = ("executive", "manager", "rep")
DEFAULT_RECIPIENTS = "params/recipients.yaml"
DEFAULT_SENDER = "Sales KPI Kit <kpi-reports@example.com>"
_EMAIL = re.compile(
    r"^[^@\s<>\"',;]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+$"
)
_ENTRY_KEYS = {"email", "name", "role", "scopes", "team_id", "rep_id"}


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


def _scope_pair(person: Recipient, scope_id: str, teams) -> tuple[str, str]:
    if person.role == "rep":
        return "rep", scope_id
    if person.role == "manager":
        return ("team" if scope_id == person.team_id else "rep"), scope_id
    if scope_id == "all":
        return "company", "all"
    return ("team" if scope_id in teams else "rep"), scope_id


@dataclass(frozen=True)
class RecipientList:
    """The parsed file: the sender address, an optional Reply-To, and the recipients."""

    recipients: list[Recipient]
    sender: str = DEFAULT_SENDER
    reply_to: str | None = None
    origin: str = DEFAULT_RECIPIENTS
    notes: list[str] = field(default_factory=list)

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
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ParamsError(f"{path}: recipients file not found") from exc
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("recipients"), list):
        raise ParamsError(f"{path}: expected a mapping with a 'recipients:' list")
    unknown = sorted(set(raw) - {"sender", "reply_to", "recipients"})
    if unknown:
        raise ParamsError(f"{path}: unknown keys {unknown}; known: sender, reply_to, recipients")
    sender = str(raw.get("sender") or DEFAULT_SENDER)
    _check_address(sender, f"{path}: sender")
    reply_to = raw.get("reply_to")
    if reply_to is not None:
        _check_address(str(reply_to), f"{path}: reply_to")

    recipients, seen = [], {}
    for i, entry in enumerate(raw["recipients"], start=1):
        where = f"{path}: recipient {i}"
        if not isinstance(entry, dict):
            raise ParamsError(f"{where}: expected a mapping with email, name, role")
        if entry.get("email"):
            where += f" ({entry['email']})"
        person = _parse_entry(entry, where)
        key = person.email.lower()
        if key in seen:
            raise ParamsError(
                f"{where}: duplicate address, already listed as recipient {seen[key]}"
            )
        seen[key] = i
        recipients.append(person)
    result = RecipientList(
        recipients, sender, None if reply_to is None else str(reply_to), str(path)
    )
    if batch is not None:
        validate_recipients(result, batch)
    return result


def _parse_entry(entry: dict, where: str) -> Recipient:
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
    return Recipient(email, name, role, tuple(scopes), team_id, rep_id)


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
    for i, person in enumerate(recipients, start=1):
        where = f"{recipients.origin}: recipient {i} ({person.email})"
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
