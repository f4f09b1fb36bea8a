"""Owners of deals, leads and activities: by the users export's ids, or by name.

An API export names owners by id (``OwnerId``, ``hubspot_owner_id``) and comes with a users
export holding those ids (``OwnersById``). A report or view export names them by person
(``Opportunity Owner``, ``Deal owner``), and its users export, when there is one, has no ids
(``OwnersByName``): the reps are then the owners the exports name, each in the team the users
export gives the person matched by email or full name, or in one team for everyone when no
users export is in the folder (a finding says so). Either way, an owner name that two people
share is an error naming them, never a coin toss.

Example
-------
>>> owners = OwnersByName(None, None)                                   # doctest: +SKIP
>>> owners.resolve(ex, deals, "deals.csv", "opportunities", (), ("Deal owner",))  # doctest: +SKIP
>>> teams, reps = owners.tables(ex, opts)                               # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from kpi_lib.data.presets.exports import Exports, assign_teams, export_text, quota
from kpi_lib.data.rules import Finding
from kpi_lib.errors import DataError

ONE_TEAM = "All reps"
"""The team of every rep when no users export says who is in which team."""


def _same_name_error(table, file, df, column, value, people: pd.DataFrame, source) -> DataError:
    who = ", ".join(
        f"{p.rep_name} ({p.email if isinstance(p.email, str) else p.rep_id})"
        for p in people.itertuples()
    )
    return DataError(
        table,
        f"owner '{value}' names {len(people)} people in {Path(source).name} ({who}): owners "
        "given by name cannot tell them apart. Export owner ids (OwnerId, hubspot_owner_id) "
        "with a users export holding them, or make the names differ in the CRM",
        column="owner_rep_id",
        file=file,
        rows=df.loc[export_text(column, df.index) == value, [column.name]],
    )


class OwnersById:
    """Owners by the users export's ids, or by a name matched to it (exactly, else ignoring
    case where that names one user). ``users`` is the reps table read from the users export."""

    by_name = False

    def __init__(self, users: pd.DataFrame, file: str):
        self.users, self.file = users, file

    def resolve(self, ex: Exports, df, file, table, ids, names, required=True) -> pd.Series:
        """Owner ids of the rows of ``df``: from an id column, or names matched to users."""
        by_id = ex.column(df, file, table, *ids)
        if by_id is not None:
            return export_text(by_id, df.index)
        by_name = ex.column(df, file, table, *names)
        if by_name is None:
            if not required:
                return pd.Series(pd.NA, index=df.index, dtype="string")
            ex.column(df, file, table, *ids, *names, required=True)
        text = export_text(by_name, df.index)
        users = self.users
        twins = users["rep_name"].duplicated(keep=False)
        named = text[text.isin(users.loc[twins, "rep_name"])]
        if len(named):
            value = named.iloc[0]
            raise _same_name_error(
                table, file, df, by_name, value, users[users["rep_name"] == value], self.file
            )
        exact = dict(zip(users["rep_name"], users["rep_id"], strict=False))
        # ignoring case only where that names one user ("Jan de Vries" and "Jan De Vries" are two)
        folded = users["rep_name"].str.lower()
        unique = ~folded.duplicated(keep=False)
        loose = dict(zip(folded[unique], users["rep_id"][unique], strict=True))
        by_case = text.str.lower().map(loose).astype("string")
        return text.map(exact).astype("string").fillna(by_case).fillna(text).astype("string")


class OwnersByName:
    """Reps from the owners the exports name; teams from a users export without ids.

    ``people`` (or None: no users export) has one row per person: ``rep_name`` (the full
    name), ``email``, ``team`` (the raw team value, or NA) and ``active`` (or NA); ``file``
    is the users export. Each owner value is matched to a person by exact full name, else by
    email (ignoring case), else by full name ignoring case where that names one person; the
    rep's id is the person's full name (the owner value when no person matches).
    """

    by_name = True

    def __init__(self, people: pd.DataFrame | None, file: str | None):
        self.people, self.file = people, file
        self.reps: dict[str, int | None] = {}  # rep id -> person (row of people) or None
        self.sources: set[str] = set()

    def _match(self, value: str) -> list[int]:
        people = self.people
        if people is None:
            return []
        exact = people.index[people["rep_name"] == value].tolist()
        if exact:
            return exact
        email = people["email"].str.lower() == value.lower()
        if email.any():
            return people.index[email.fillna(False)].tolist()
        return people.index[people["rep_name"].str.lower() == value.lower()].tolist()

    def resolve(self, ex: Exports, df, file, table, ids, names, required=True) -> pd.Series:
        """Rep ids of the rows of ``df`` (recorded, to build the reps table from)."""
        by_id = ex.column(df, file, table, *ids)
        column = by_id if by_id is not None else ex.column(df, file, table, *names)
        if column is None:
            if not required:
                return pd.Series(pd.NA, index=df.index, dtype="string")
            ex.column(df, file, table, *names, *ids, required=True)
        text = export_text(column, df.index)
        self.sources.add(Path(file).name)
        mapping = {}
        for value in text.dropna().unique():
            matched = [] if by_id is not None else self._match(value)
            if len(matched) > 1:
                raise _same_name_error(
                    table, file, df, column, value, self.people.loc[matched], self.file
                )
            person = matched[0] if matched else None
            rep = value if person is None else self.people.at[person, "rep_name"]
            known = self.reps.setdefault(rep, person)
            if known != person and None not in (known, person):
                raise _same_name_error(
                    table, file, df, column, value, self.people.loc[[known, person]], self.file
                )
            mapping[value] = rep
        return text.map(mapping).astype("string")

    def tables(self, ex: Exports, opts: dict, names: dict | None = None):
        """``(teams, reps)`` of the owners resolved so far; findings say where teams came from."""
        ids = list(self.reps)
        people = self.people
        person = [self.reps[r] for r in ids]
        reps = pd.DataFrame({"rep_id": ids, "rep_name": ids}, dtype="string")
        if people is None:
            team_values = pd.Series(ONE_TEAM, index=reps.index, dtype="string")
            reps["email"] = pd.Series(pd.NA, index=reps.index, dtype="string")
            active = None
            ex.findings.append(
                Finding(
                    "reps",
                    "team_id",
                    len(reps),
                    f"are the owners named in {', '.join(sorted(self.sources))}; without a users "
                    f"export every rep is in one team, '{ONE_TEAM}' (add a users export to the "
                    "folder for teams)",
                )
            )
        else:
            pick = lambda column: pd.Series(  # noqa: E731
                [people.at[p, column] if p is not None else pd.NA for p in person],
                index=reps.index,
                dtype="object",
            )
            team_values = export_text(pick("team"), reps.index)
            reps["email"] = export_text(pick("email"), reps.index)
            active = pick("active")
            idle = ~people.index.isin([p for p in person if p is not None])
            ex.not_rows(
                self.file,
                pd.Series(idle, index=people.index),
                "a user who owns nothing in the exports (reps are the owners)",
            )
            unmatched = [r for r, p in zip(ids, person, strict=True) if p is None]
            if unmatched:
                ex.findings.append(
                    Finding(
                        "reps",
                        "team_id",
                        len(unmatched),
                        f"are owners not found in {Path(self.file).name} by email or full name "
                        f"({', '.join(unmatched[:5])}{', ...' if len(unmatched) > 5 else ''}); "
                        f"team '{opts['teams']['default']}'",
                    )
                )
        reps["team_id"], teams = assign_teams(ex, reps, team_values, names or {}, opts)
        reps["is_quota_carrying"] = quota(reps, active, opts)
        return teams, reps
