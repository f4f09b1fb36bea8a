"""What both CRM presets share: their options, reading a folder of exports, and the column
helpers that turn raw export values into canonical ones.

Each file is recognised as the export it is (``recognise``) and read without its report
trailer; a column is found by its API name or its report label, ignoring case, spaces and
underscores (``Exports.column``); dates (``Exports.dates``), amounts with their currency
(``Exports.money``), flags and won/lost outcomes are read the same way for Salesforce and
HubSpot, formatted values through ``values``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from kpi_lib.data.files import FALSE, TRUE, as_text, read_table_file
from kpi_lib.data.presets.recognise import (
    TRAILER_REASON,
    ExportKind,
    norm,
    recognise,
    sheet_of,
    trailer_rows,
)
from kpi_lib.data.presets.values import ORDERS, LocaleDates, ValuesError, parse_numbers
from kpi_lib.data.rules import Finding
from kpi_lib.errors import DataError, ParamsError, SourceError
from kpi_lib.paths import read_yaml

DEFAULTS: dict[str, dict] = {
    "salesforce": {
        # stage -> won | lost | open; used where IsWon / IsClosed are not in the export
        "stages": {"Closed Won": "won", "Closed Lost": "lost"},
        "probability_scale": 100,  # Opportunity.Probability is a percent
        "qualified": {
            "date_column": "Qualified_Date__c",  # a custom date field, used when exported
            "statuses": ["Qualified"],  # else: leads in these statuses ...
            "status_date_column": "LastModifiedDate",  # ... dated by this column
            "converted_count": True,  # converted leads count, dated ConvertedDate
        },
        "teams": {"column": None, "names": {}, "default": "Unassigned"},  # None: first of
        # UserRoleId, Role, Department, Division that holds a value; names: value -> team name
        "activity_types": {
            "call": "call",
            "email": "email",
            "listemail": "email",
            "meeting": "meeting",
            "demo": "demo",
        },
        "completed_tasks_only": True,
        "not_quota_carrying": [],  # user ids or names (managers, admins)
        "date_order": None,  # MDY or DMY, for files whose dates do not tell (10/5/2026)
        "decimal": None,  # "." or ",", for amounts that do not tell (1.000)
        "sheet": None,  # a workbook's sheet (name, or {file name: sheet}); None: the first
    },
    "hubspot": {
        "stages": {
            "closedwon": "won",
            "closedlost": "lost",
            "Closed Won": "won",
            "Closed Lost": "lost",
        },
        "stage_labels": {
            "appointmentscheduled": "Appointment Scheduled",
            "qualifiedtobuy": "Qualified To Buy",
            "presentationscheduled": "Presentation Scheduled",
            "decisionmakerboughtin": "Decision Maker Bought-In",
            "contractsent": "Contract Sent",
            "closedwon": "Closed Won",
            "closedlost": "Closed Lost",
        },
        "probability_scale": 1,  # hs_deal_stage_probability is 0-1
        "qualified": {"lifecycle_stage": "salesqualifiedlead"},  # or marketingqualifiedlead
        "teams": {"column": None, "names": {}, "default": "Unassigned"},
        "activity_types": {"demo": "demo", "product demo": "demo"},
        "skip_meeting_outcomes": ["CANCELED", "NO_SHOW", "RESCHEDULED"],
        "not_quota_carrying": [],
        "date_order": None,
        "decimal": None,
        "sheet": None,
    },
}


@dataclass
class PresetResult:
    """Canonical tables ``{name: (frame, file)}`` read from exports, and what happened on the way."""

    tables: dict[str, tuple[pd.DataFrame, str]]
    findings: list[Finding] = field(default_factory=list)
    accounting: list[dict] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    inputs: list[dict] = field(default_factory=list)
    """Every file of the folder: what it was read as (None: not recognised), and how."""


def merge_options(name: str, options: str | Path | dict | None) -> dict:
    """The preset's defaults with ``options`` (YAML file or dict) merged over them, checked."""
    opts = copy.deepcopy(DEFAULTS[name])
    if options is None:
        return opts
    if not isinstance(options, dict):
        options = read_yaml(Path(options), "preset options file")
    unknown = sorted(set(options) - set(opts))
    if unknown:
        raise ParamsError(f"{name} preset options: unknown key(s) {unknown}; known: {sorted(opts)}")
    for key, value in options.items():
        if isinstance(opts[key], dict) and key not in ("stages", "stage_labels", "activity_types"):
            if not isinstance(value, dict):
                raise ParamsError(f"{name} preset options: '{key}' must be a mapping")
            opts[key] = {**opts[key], **value}
        else:
            opts[key] = value
    bad = {s: o for s, o in opts["stages"].items() if o not in ("won", "lost", "open")}
    if bad:
        raise ParamsError(f"{name} preset options: stages map to won, lost or open, not {bad}")
    scale = opts["probability_scale"]
    if isinstance(scale, bool) or not isinstance(scale, int | float) or scale <= 0:
        raise ParamsError(
            f"{name} preset options: probability_scale must be 1 or 100, got {scale!r}"
        )
    opts["activity_types"] = {str(k).lower(): v for k, v in opts["activity_types"].items()}
    order = opts["date_order"]
    if order is not None:
        opts["date_order"] = str(order).upper().replace("/", "").replace(".", "")
        if opts["date_order"] not in ORDERS:
            raise ParamsError(
                f"{name} preset options: date_order is MDY (month first: 10/5/2026 is "
                f"October 5) or DMY (day first: 10/5/2026 is 10 May), got {order!r}"
            )
    if opts["decimal"] not in (None, ".", ","):
        raise ParamsError(f"{name} preset options: decimal is '.' or ',', got {opts['decimal']!r}")
    sheet = opts["sheet"]
    if sheet is not None and not isinstance(sheet, str | dict):
        raise ParamsError(
            f"{name} preset options: sheet is a sheet name, or a mapping from file name to "
            f"sheet name, got {sheet!r}"
        )
    return opts


class Exports:
    """The export files of one folder, each recognised as the export it is, and their columns
    found by API name or label.

    ``kinds`` are the preset's exports (``recognise.ExportKind``); ``inputs`` lists what every
    file was read as, for ``validate``. Reading an export sets its report trailer aside
    (accounted as "not a row"); its dates and amounts are read through ``values``.
    """

    def __init__(self, preset: str, folder: Path, kinds: list[ExportKind], opts: dict):
        self.preset, self.folder, self.opts = preset, folder, opts
        self.kinds = {k.name: k for k in kinds}
        self.found = recognise(folder, kinds, preset, opts.get("sheet"))
        self.inputs: list[dict] = self.found.listing
        self.accounting: list[dict] = []
        self.findings: list[Finding] = []
        self._dates: dict[str, LocaleDates] = {}
        self._frames: dict[str, pd.DataFrame] = {}

    def read(self, kind: str, required: bool = False) -> tuple[pd.DataFrame, str] | None:
        """The rows of the ``kind`` export (its report trailer set aside), and its file."""
        spec = self.kinds[kind]
        path = self.found.files.get(kind)
        if path is None:
            if required:
                seen = [
                    f"{i['file']} ({'read as ' + i['read_as'] if i['read_as'] else i['how']})"
                    for i in self.inputs
                ]
                article = "an" if kind[0] in "aeiou" else "a"
                raise SourceError(
                    f"{self.folder}: the {self.preset} preset needs {article} {kind} export "
                    f"({spec.names[0]}.csv, or any file with these columns: "
                    f"{'; '.join(' / '.join(g[:3]) for g in spec.needs)}); "
                    f"found: {', '.join(seen) or 'no files'}"
                )
            return None
        df = self.found.frames.get(path)
        if df is None:
            df = read_table_file(path, spec.table, sheet_of(self.opts.get("sheet"), path))
        file = str(path)
        ids = [c for c in df.columns if norm(c) in {norm(i) for i in spec.ids}]
        trailer = trailer_rows(df, ids)
        self.not_rows(file, trailer, TRAILER_REASON)
        df = df[~trailer]
        self._frames[file] = df
        return df, file

    @staticmethod
    def find(df: pd.DataFrame, *candidates: str) -> str | None:
        columns = {norm(c): c for c in df.columns}
        for c in candidates:
            if norm(c) in columns:
                return columns[norm(c)]
        return None

    def column(self, df, file, table, *candidates, required=False) -> pd.Series | None:
        found = self.find(df, *candidates)
        if found is None:
            if required:
                raise DataError(
                    table,
                    f"the {self.preset} export has no column {' / '.join(repr(c) for c in candidates)}"
                    f" (found: {', '.join(map(str, df.columns))})",
                    column=candidates[0],
                    file=file,
                )
            return None
        return df[found]

    def dates(self, df, file, table, column, *candidates, required=False) -> pd.Series:
        """A date column as ISO text: locale dates in the file's order, Excel serials and epoch
        milliseconds converted, a workbook's date cells as they are. ``column`` is the canonical
        column, for messages; an ambiguous order is a DataError naming the rows."""
        series = self.column(df, file, table, *candidates, required=required)
        if series is None:
            return pd.Series(pd.NA, index=df.index, dtype="string")
        if file not in self._dates:
            frame = self._frames.get(file, df)
            self._dates[file] = LocaleDates(
                [frame[c] for c in frame.columns], self.opts.get("date_order")
            )
        try:
            return self._dates[file].to_iso(as_text(series))
        except ValuesError as err:
            raise self._values_error(err, table, column, df, file, series) from None

    def money(self, df, file, table, amounts: tuple[str, ...], currencies: tuple[str, ...]):
        """``(amount, currency)`` of a table: amounts as numbers (``"USD 1,000.00"``,
        ``"(500.00)"``, ``"€1.234,56"``, a workbook's number cells as they are), and the
        currency each amount carries, else the currency column's.

        An amount's code that contradicts the currency column, a percentage, or text that is
        no amount are DataErrors naming the rows; so is a column where some amounts carry a
        currency and others do not (``USD 1,000.00`` beside ``$500``).
        """
        index = df.index
        raw = self.column(df, file, table, *amounts)
        column = export_text(self.column(df, file, table, *currencies), index).str.upper()
        if raw is None:
            return pd.Series(np.nan, index=index), column
        try:
            numbers = parse_numbers(raw, self.opts.get("decimal"))
        except ValuesError as err:
            raise self._values_error(err, table, "amount", df, file, raw) from None
        problems = [
            (
                numbers.bad,
                "is not an amount (expected e.g. 1200, 1,200.50, USD 1,200.50, "
                "(500.00) or €1.200,50)",
            ),
            (numbers.percent, "is a percentage, not an amount"),
        ]
        for mask, problem in problems:
            if mask.any():
                raise DataError(
                    table,
                    problem,
                    column="amount",
                    file=file,
                    rows=df.loc[mask, [raw.name]],
                    count=int(mask.sum()),
                )
        carried = numbers.currency
        clash = carried.notna() & column.notna() & (carried != column)
        if clash.any():
            shown = df.loc[clash, [raw.name]].assign(currency=column[clash])
            raise DataError(
                table,
                "the amount's currency differs from the currency column's",
                column="currency",
                file=file,
                rows=shown,
                count=int(clash.sum()),
            )
        currency = carried.fillna(column).astype("string")
        priced = numbers.value.notna()
        if carried.notna().any() and (priced & currency.isna()).any():
            unknown = priced & currency.isna()
            raise DataError(
                table,
                "some amounts carry a currency and these do not (a bare number, or a symbol such "
                "as $ that names no single currency): sums would mix currencies. Export currency "
                "codes (USD 1,000.00) or a currency column",
                column="currency",
                file=file,
                rows=df.loc[unknown, [raw.name]],
                count=int(unknown.sum()),
            )
        return numbers.value, currency

    def _values_error(self, err: ValuesError, table, column, df, file, series) -> DataError:
        rows = err.rows.reindex(df.index, fill_value=False).astype(bool)
        return DataError(
            table,
            f"{err} (column '{series.name}')",
            column=column,
            file=file,
            rows=df.loc[rows, [series.name]],
            count=int(rows.sum()),
        )

    def not_rows(self, file: str, mask: pd.Series, reason: str) -> None:
        n = int(mask.sum())
        if n:
            self.accounting.append(
                {"table": Path(file).name, "status": "not a row", "reason": reason, "rows": n}
            )
            self.findings.append(Finding(Path(file).name, None, n, f"not read: {reason}"))


def export_text(series: pd.Series | None, index) -> pd.Series:
    if series is None:
        return pd.Series(pd.NA, index=index, dtype="string")
    return as_text(series).astype("string")


def flag(series: pd.Series | None, index) -> pd.Series:
    """A yes/no export column as a nullable boolean; anything else stays as text for the loader."""
    text = export_text(series, index).str.lower()
    out = pd.Series(pd.NA, index=index, dtype="object")
    out[text.isin(TRUE)] = True
    out[text.isin(FALSE)] = False
    odd = text.notna() & ~text.isin(TRUE | FALSE)
    out[odd] = text[odd]
    return out


def closed_and_won(stage: pd.Series, won: pd.Series | None, closed: pd.Series | None, opts: dict):
    """is_closed / is_won: the export's flags where present, else the stage map."""
    stage_map = {norm(k): v for k, v in opts["stages"].items()}
    mapped = stage.map(lambda s: stage_map.get(norm(s), "open") if isinstance(s, str) else "open")
    is_won = won if won is not None else (mapped == "won")
    if closed is not None:
        is_closed = closed
    elif won is not None:
        is_closed = (mapped != "open") | (won == True)  # noqa: E712 (object column of True/False/text)
    else:
        is_closed = mapped != "open"
    return is_closed, is_won


def is_true(series: pd.Series) -> pd.Series:
    """Exactly the True values of a column of True / False / NA / text."""
    return (
        series.astype(object).map(lambda v: isinstance(v, bool | np.bool_) and bool(v)).astype(bool)
    )


def stage_probabilities(stage, probability, is_closed, scale, ex, file) -> dict[str, float]:
    """Median probability of the open deals of each stage, on a 0-1 scale.

    A percentage (``"80%"``, a workbook cell formatted as one) is a fraction already; a bare
    number is divided by the preset's ``probability_scale``. A value that is no number is a
    DataError naming it.
    """
    if probability is None:
        return {}
    numbers = parse_numbers(probability)
    if numbers.bad.any():
        raise DataError(
            "opportunities",
            "is not a probability (expected e.g. 80, 0.8 or 80%)",
            column="probability",
            file=file,
            rows=probability[numbers.bad].to_frame(),
            count=int(numbers.bad.sum()),
        )
    p = numbers.value.where(numbers.percent, numbers.value / float(scale))
    too_big = p > 1
    if too_big.any():
        raise DataError(
            "opportunities",
            f"probability above 100% after dividing by probability_scale "
            f"{scale} (set probability_scale: 100 for percents, 1 for fractions)",
            column="probability",
            file=file,
            count=int(too_big.sum()),
        )
    open_ = ~is_true(is_closed) & p.notna()
    return {str(s): round(float(v), 4) for s, v in p[open_].groupby(stage[open_]).median().items()}


def assign_teams(ex: Exports, users: pd.DataFrame, team_values: pd.Series, names: dict, opts: dict):
    default = opts["teams"]["default"]
    team_id = team_values.fillna(default).astype("string")
    names = {**names, **{str(k): v for k, v in opts["teams"]["names"].items()}}
    ids = list(dict.fromkeys(team_id))
    teams = pd.DataFrame({"team_id": ids, "team_name": [names.get(t, t) for t in ids]})
    return team_id, teams


def quota(users: pd.DataFrame, active: pd.Series | None, opts: dict) -> pd.Series:
    out = pd.Series(True, index=users.index)
    if active is not None:
        out &= flag(active, users.index).map(lambda v: v is not False)
    listed = {str(x).lower() for x in opts["not_quota_carrying"]}
    out &= ~(users["rep_id"].str.lower().isin(listed) | users["rep_name"].str.lower().isin(listed))
    return out
