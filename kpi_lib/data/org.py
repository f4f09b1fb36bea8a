"""Configuration belongs to its org: which targets, KPI settings and recipients apply to a source.

Targets, stage probabilities and recipients are business configuration of one org. They are
never carried over to another org's data:

- a source file names its org's files (``targets:``, ``kpis:``, ``recipients:``), as the one
  ``python -m kpi_lib init`` writes does;
- the demo org (the teams ``demo-data`` writes, in any format) uses the shipped
  ``params/targets.yaml``, ``params/kpis.yaml`` and ``params/recipients.yaml``;
- any other source has none until it has its own: every tile says "no target set", the KPI
  settings are the built-in ones (gross margin 1.0, stage probabilities from the CRM export
  where it carries them), and there is nobody to send digests to.

A file given explicitly to a command (``--targets``, ``--recipients``) always wins.

Example
-------
>>> files = org_files(load_source("data/demo.duckdb"))     # doctest: +SKIP
>>> files.origin, files.targets.name                       # doctest: +SKIP
('the demo org (params/)', 'targets.yaml')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kpi_lib.data.source import Source
from kpi_lib.paths import project_path

DEMO_FILES = {
    "targets": "params/targets.yaml",
    "kpis": "params/kpis.yaml",
    "recipients": "params/recipients.yaml",
}
"""The demo org's configuration, shipped with the kit."""

INIT_HINT = "python -m kpi_lib init --source <your source> writes a starting configuration"


@dataclass(frozen=True)
class OrgFiles:
    """The configuration files of one org (None: the org has none of that kind).

    ``origin`` says where they come from, for notes and manifests.
    """

    targets: Path | None
    kpis: Path | None
    recipients: Path | None
    origin: str

    def get(self, kind: str) -> Path | None:
        return getattr(self, kind)


def is_demo_org(src: Source) -> bool:
    """Whether ``src`` holds the demo org: exactly the demo's teams, by id and name."""
    from kpi_lib.data.demo import demo_teams

    teams = src.frame("teams")
    found = dict(zip(teams["team_id"].astype(str), teams["team_name"].astype(str), strict=True))
    return found == demo_teams()


def org_files(src: Source) -> OrgFiles:
    """The configuration files that belong to the org of ``src`` (see the module docstring)."""
    if src.config_files:
        named = {k: Path(v) for k, v in src.config_files.items()}
        return OrgFiles(
            named.get("targets"),
            named.get("kpis"),
            named.get("recipients"),
            f"the source file of {src.location}",
        )
    if is_demo_org(src):
        files = {k: project_path(v) for k, v in DEMO_FILES.items()}
        return OrgFiles(
            *(files[k] if files[k].is_file() else None for k in DEMO_FILES),
            "the demo org (params/)",
        )
    return OrgFiles(None, None, None, f"none yet for {src.location} ({INIT_HINT})")
