"""CRM presets: Salesforce and HubSpot exports read onto the canonical tables.

Raw exports are renamed and cast here, in one place; KPI code only sees canonical tables. Each
file of the folder is recognised as the export it is by its name or else by its columns
(``recognise``: ``report1765500000000.csv`` is an opportunity report by its header), read as
CSV, Parquet, XLSX or XLS, its report trailer and subtotals set aside as "not a row". Each
column is found by its API name or by the label a report or UI export uses ("StageName" or
"Stage", "CloseDate" or "Close Date"), ignoring case, spaces and underscores; formatted
amounts and locale dates are read by ``values``. Owners given by name ("Opportunity Owner",
"Deal owner") are matched to the users export, or are the reps themselves when the folder has
no users export with ids (``owners``).

Business rules that differ between orgs are options (a YAML file or a dict, merged over the
defaults of ``exports.DEFAULTS``): which stages are won or lost, what makes a lead qualified, which user field
names the team, the probability scale, activity types. Every raw row ends up as a canonical row
or in the row accounting with the reason it is not one (an open task, a queue-owned lead, an
OpportunityHistory row that changed the amount and not the stage).

Example
-------
>>> src = load_source("tests/fixtures/salesforce", preset="salesforce")   # doctest: +SKIP
>>> src.frame("opportunities")[["opportunity_id", "stage", "is_won"]].head(2)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from kpi_lib.data.presets import hubspot, salesforce
from kpi_lib.data.presets.exports import DEFAULTS, Exports, PresetResult, merge_options
from kpi_lib.errors import SourceError

__all__ = ["DEFAULTS", "PresetResult", "merge_options", "read_preset"]


def read_preset(name: str, folder: Path, options: str | Path | dict | None = None) -> PresetResult:
    """Read a folder of ``name``'s exports (``salesforce`` or ``hubspot``) as canonical tables."""
    if name not in DEFAULTS:
        raise SourceError(f"unknown preset '{name}'; known presets: {', '.join(DEFAULTS)}")
    if not folder.is_dir():
        raise SourceError(f"preset '{name}' reads a folder of exports; '{folder}' is not a folder")
    opts = merge_options(name, options)
    crm = salesforce if name == "salesforce" else hubspot
    reader = Exports(name, folder, crm.KINDS, opts)
    read = salesforce.read_salesforce if name == "salesforce" else hubspot.read_hubspot
    return read(reader, opts)
