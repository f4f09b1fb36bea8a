"""The report matrix (``params/reports.yaml``) and the plan of a batch: which role renders which scopes.

A role is a notebook and a kind of scope; the plan is every role x scope of the period, each with
the file names its id gives (``kpi_lib.publish.file_names``).

Example
-------
>>> matrix = load_matrix("params/reports.yaml")            # doctest: +SKIP
>>> [s.html_path for s in plan_reports(matrix, scope_table(batch))][:2]   # doctest: +SKIP
[PosixPath('executive/all.html'), PosixPath('manager/na-ent.html')]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from kpi_lib.errors import ParamsError, UnknownScopeError
from kpi_lib.publish.file_names import file_stems

SCOPE_KINDS = ("company", "team", "rep")


DEFAULT_TIMEOUT = 600.0


# A role names a folder: it is configuration, not data, so it must already be a safe name.
_SAFE_ROLE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class RoleSpec:
    """One role of the report matrix: a notebook and the scopes it is rendered for.

    ``scope_ids=None`` means every scope of that kind active in the period.
    """

    role: str
    notebook: Path
    scope: str
    scope_ids: tuple[str, ...] | None = None
    title: str = ""


@dataclass(frozen=True)
class Matrix:
    """The parsed report matrix: roles in file order, the per-report timeout and the kernel."""

    roles: dict[str, RoleSpec]
    timeout: float = DEFAULT_TIMEOUT
    kernel: str = "python3"


def load_matrix(path: str | Path = "params/reports.yaml") -> Matrix:
    """Read the report matrix; raise ``ParamsError`` naming the file and entry at fault.

    Example
    -------
    >>> m = load_matrix("params/reports.yaml")  # doctest: +SKIP
    >>> [(r.role, r.scope) for r in m.roles.values()]  # doctest: +SKIP
    [('executive', 'company'), ('manager', 'team'), ('rep', 'rep')]
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise ParamsError(f"{path}: report matrix not found") from exc
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("roles"), dict) or not raw["roles"]:
        raise ParamsError(f"{path}: expected a mapping with a non-empty 'roles:' mapping")
    unknown = sorted(set(raw) - {"roles", "timeout_seconds", "kernel"})
    if unknown:
        raise ParamsError(f"{path}: unknown keys {unknown}; known: roles, timeout_seconds, kernel")
    roles = {}
    for role, entry in raw["roles"].items():
        where = f"{path}: role '{role}'"
        if not isinstance(role, str) or not _SAFE_ROLE.match(role):
            raise ParamsError(f"{where}: role names are lower-case letters, digits, '_' or '-'")
        if not isinstance(entry, dict) or "notebook" not in entry or "scope" not in entry:
            raise ParamsError(f"{where}: needs 'notebook:' and 'scope:'")
        extra = sorted(set(entry) - {"notebook", "scope", "scope_ids", "title"})
        if extra:
            raise ParamsError(
                f"{where}: unknown keys {extra}; known: notebook, scope, scope_ids, title"
            )
        if entry["scope"] not in SCOPE_KINDS:
            raise ParamsError(
                f"{where}: scope '{entry['scope']}' is not one of {list(SCOPE_KINDS)}"
            )
        ids = entry.get("scope_ids")
        if ids is not None:
            if isinstance(ids, str) or not isinstance(ids, list) or not ids:
                raise ParamsError(f"{where}: scope_ids must be a non-empty list of ids")
            if any(i is None or not str(i).strip() for i in ids):
                raise ParamsError(f"{where}: scope_ids must be non-empty strings, got {ids!r}")
            ids = tuple(str(i) for i in ids)
        roles[role] = RoleSpec(
            role,
            Path(entry["notebook"]),
            entry["scope"],
            ids,
            str(entry.get("title") or role.replace("_", " ").capitalize()),
        )
    timeout = raw.get("timeout_seconds", DEFAULT_TIMEOUT)
    if not isinstance(timeout, int | float) or timeout <= 0:
        raise ParamsError(f"{path}: timeout_seconds must be a positive number of seconds")
    return Matrix(roles, float(timeout), str(raw.get("kernel") or "python3"))


@dataclass(frozen=True)
class ReportSpec:
    """One report of a batch: a role's notebook executed for one scope.

    ``file_stem`` names its files (``kpi_lib.publish.file_names``): the id itself when it is a safe
    file name, else a slug and a short hash.

    Example
    -------
    >>> spec = ReportSpec("rep", Path("notebooks/rep.ipynb"), "rep", "Cara Losch", "Cara Losch",
    ...                   "Cara-Losch-06938756")
    >>> spec.html_path, spec.notebook_path
    (PosixPath('rep/Cara-Losch-06938756.html'), PosixPath('_notebooks/rep/Cara-Losch-06938756.ipynb'))
    """

    role: str
    notebook: Path
    scope: str
    scope_id: str
    scope_name: str
    file_stem: str

    @property
    def html_path(self) -> Path:
        """Where the HTML goes, relative to the period folder."""
        return Path(self.role) / f"{self.file_stem}.html"

    @property
    def notebook_path(self) -> Path:
        """Where the executed notebook goes, relative to the period folder."""
        return Path("_notebooks") / self.role / f"{self.file_stem}.ipynb"


def scope_table(batch) -> list[tuple[str, str, str, str | None]]:
    """``(scope, scope_id, scope_name, team_id)`` for every scope the batch knows, in its order.

    One row per scope. Accepts what ``batch.scopes()`` returns: a DataFrame with ``scope``,
    ``scope_id``, a name column (``scope_name`` or ``name``) and optionally ``team_id``, or an
    iterable of mappings or objects with those fields.
    """
    scopes = batch.scopes()
    if hasattr(scopes, "to_dict") and hasattr(scopes, "columns"):
        scopes = scopes.to_dict("records")
    rows = []
    for item in scopes:
        get = item.get if isinstance(item, dict) else lambda k, d=None, o=item: getattr(o, k, d)
        scope, scope_id = str(get("scope")), str(get("scope_id"))
        name = get("scope_name", None) or get("name", None) or scope_id
        team = get("team_id", None)
        rows.append((scope, scope_id, str(name), None if team is None else str(team)))
    return rows


def plan_reports(
    matrix: Matrix, scopes: Sequence[tuple], roles: Sequence[str] | None = None
) -> list[ReportSpec]:
    """Every role x scope report of the batch, in matrix order then scope order.

    Raises ``ParamsError`` for an unknown role and ``UnknownScopeError`` for an explicit
    ``scope_ids`` entry the batch does not know. File names come from ``file_stems`` over every
    scope of the role's kind, so a report keeps its file whichever subset is rendered.
    """
    if roles is not None:
        unknown = [r for r in roles if r not in matrix.roles]
        if unknown:
            raise ParamsError(
                f"unknown roles {unknown}; the report matrix has {list(matrix.roles)}"
            )
    chosen = [matrix.roles[r] for r in (roles if roles is not None else matrix.roles)]
    by_kind: dict[str, list[tuple[str, str]]] = {kind: [] for kind in SCOPE_KINDS}
    for scope, scope_id, name, *_ in scopes:
        if scope in by_kind:
            by_kind[scope].append((scope_id, name))
    specs = []
    for role in chosen:
        known = dict(by_kind[role.scope])
        if role.scope_ids is None:
            ids = list(known)
        else:
            missing = [i for i in role.scope_ids if i not in known]
            if missing:
                raise UnknownScopeError(
                    f"report matrix role '{role.role}': {role.scope} ids {missing} are not "
                    f"active in this period; known: {sorted(known)}"
                )
            ids = list(role.scope_ids)
        stems = file_stems(known)
        specs += [
            ReportSpec(role.role, role.notebook, role.scope, i, known[i], stems[i]) for i in ids
        ]
    return specs
