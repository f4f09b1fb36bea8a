"""Report file names from scope ids: any id is data, a file name is derived from it.

A team or rep id is whatever the CRM holds: ``"Cara Losch"``, ``"Vente/Québec"``, ``".."``, two
ids that differ only by case. The file of its report is named by ``file_stems``:

- an id that is already a portable file name (ASCII letters, digits, ``_``, ``-``, ``.``, not
  starting with ``.``, at most ``MAX_PLAIN`` characters, no Windows device name) is its own
  name, unless it collides without regard to case with another id of the same folder;
- any other id becomes a readable slug (accents folded, every other character run a ``-``, at
  most ``MAX_SLUG`` characters) plus ``-`` and the first 8 hex digits of the id's SHA-256.

The same id always gets the same name within one set of ids. The index, the manifest,
``kpis.csv``, recipients and digests keep the real id; only file names use the stem.

Example
-------
>>> file_stems(["na-ent", "Cara Losch", "José Núñez", "R001", "r001"])
... # doctest: +NORMALIZE_WHITESPACE
{'na-ent': 'na-ent', 'Cara Losch': 'Cara-Losch-06938756', 'José Núñez': 'Jose-Nunez-cd32e4cb',
 'R001': 'R001-1e8758b1', 'r001': 'r001-3c704c2b'}
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

MAX_PLAIN = 100
MAX_SLUG = 60
_PLAIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9_.]+")
# Names Windows reserves in any folder, with or without an extension.
_DEVICES = {"con", "prn", "aux", "nul"} | {f"{d}{i}" for d in ("com", "lpt") for i in range(10)}


def slug(text: str) -> str:
    """A readable ASCII file-name part of ``text``: ``"José Núñez/EMEA"`` -> ``"Jose-Nunez-EMEA"``.

    Never empty (``"scope"`` when nothing readable is left), never starts with ``.`` or ``-``.
    """
    folded = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode("ascii")
    out = _UNSAFE_RUN.sub("-", folded).strip("-.")[:MAX_SLUG].rstrip("-.")
    return out or "scope"


def is_plain(scope_id: str) -> bool:
    """Whether ``scope_id`` can name a file on any system exactly as it is."""
    return (
        len(scope_id) <= MAX_PLAIN
        and _PLAIN.match(scope_id) is not None
        and scope_id.split(".")[0].lower() not in _DEVICES
    )


def short_hash(scope_id: str) -> str:
    """The first 8 hex digits of the SHA-256 of ``scope_id`` (UTF-8)."""
    return hashlib.sha256(str(scope_id).encode("utf-8")).hexdigest()[:8]


def file_stems(scope_ids: Iterable[str]) -> dict[str, str]:
    """``{scope_id: file stem}`` for the ids of one folder; stems are unique without regard
    to case. See the module docstring for the rule."""
    ids = list(dict.fromkeys(str(i) for i in scope_ids))
    folded = Counter(i.casefold() for i in ids)
    stems = {
        i: i if is_plain(i) and folded[i.casefold()] == 1 else f"{slug(i)}-{short_hash(i)}"
        for i in ids
    }
    taken = Counter(s.casefold() for s in stems.values())
    clashes = [i for i, s in stems.items() if taken[s.casefold()] > 1]
    for i in clashes:  # a plain id equal to another's slug-hash: vanishingly rare, still unique
        stems[i] = f"{slug(i)}-{hashlib.sha256(i.encode('utf-8')).hexdigest()[:16]}"
    return stems


def report_paths(scopes) -> dict[tuple[str, str], Path]:
    """``{(scope, scope_id): <role>/<stem>.html}`` for ``batch.scopes()`` (objects with
    ``role``, ``scope``, ``scope_id``): where each report of a batch is, relative to its
    period folder, when no manifest says so."""
    scopes = list(scopes)
    stems = {
        kind: file_stems(s.scope_id for s in scopes if s.scope == kind)
        for kind in {s.scope for s in scopes}
    }
    return {
        (s.scope, s.scope_id): Path(s.role) / f"{stems[s.scope][s.scope_id]}.html" for s in scopes
    }
