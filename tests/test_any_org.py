"""Any org: a CRM the kit was not shaped for renders, from every input the kit reads.

The org of ``tests/_orgs.py`` (teams and reps named with spaces, accents, apostrophes and a
slash, two reps whose names differ only by case, its own stage names, history from August 2025,
no spend, no revenue, and other optional tables missing per input kind) is written as a
canonical CSV folder, a Parquet folder, a DuckDB file, a PostgreSQL database, a Salesforce API
export with history, a Salesforce UI report export, a Salesforce Classic report export as the
Export button writes it (report ids as names, formatted amounts, day-first dates, the trailer),
a HubSpot export, a deals-only HubSpot XLSX and column-mapped files.

The fast tests read each kind back (no rendering). The slow ones render the November 2026
batch from each kind with the real notebooks and the shipped ``params/`` (the demo org's), then
write the digests of an executive, one team's manager and one rep as ``.eml`` files, through
``python -m kpi_lib render`` / ``send`` run in-process. One batch per kind is shared by the
assertions on it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections import Counter
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pandas as pd
import pytest
import yaml
from _orgs import (
    AS_OF,
    PERIOD,
    Org,
    Written,
    foreign_org,
    recipients_for,
    write_colmap,
    write_csv_folder,
    write_duckdb_file,
    write_hubspot,
    write_hubspot_xlsx,
    write_parquet_folder,
    write_postgres,
    write_salesforce_api,
    write_salesforce_classic,
    write_salesforce_report,
)
from _postgres import throwaway_postgres

import kpi_lib
from kpi_lib.cli import main
from kpi_lib.data.source import source_spec

FILE_WRITERS = {
    "csv": lambda org, work: write_csv_folder(org, work / "crm"),
    "parquet": lambda org, work: write_parquet_folder(org, work / "crm"),
    "duckdb": lambda org, work: write_duckdb_file(org, work / "crm.duckdb"),
    "salesforce": lambda org, work: write_salesforce_api(org, work / "salesforce"),
    "salesforce_report": lambda org, work: write_salesforce_report(org, work / "report"),
    "salesforce_classic": lambda org, work: write_salesforce_classic(org, work / "classic"),
    "hubspot": lambda org, work: write_hubspot(org, work / "hubspot"),
    "hubspot_xlsx": lambda org, work: write_hubspot_xlsx(org, work / "hubspot_xlsx"),
    "colmap": lambda org, work: write_colmap(org, work / "pipedrive"),
}
KINDS = [*FILE_WRITERS, "postgresql"]
# A whole batch (about 30 s each) from every kind but the UI report export, whose source
# (labels, owners by name, no optional table) the Classic report export renders too, with
# formatted values, day-first dates and a trailer on top; it is still read back (fast).
BATCH_KINDS = [k for k in KINDS if k != "salesforce_report"]
OPTIONAL = ("leads", "activities", "stage_history", "accounts", "revenue", "spend")
ROLE_OF = {"company": "executive", "team": "manager", "rep": "rep"}


@pytest.fixture(scope="module")
def org() -> Org:
    return foreign_org()


def write_kind(kind: str, org: Org, work: Path, postgres_url=None) -> Written:
    if kind == "postgresql":
        return write_postgres(org, postgres_url())
    return FILE_WRITERS[kind](org, work)


def spec_of(written: Written):
    """What ``--source`` / ``--preset`` / ``--options`` say, as the CLI reads them."""
    args = dict(zip(written.args[::2], written.args[1::2], strict=True))
    return source_spec(args["--source"], args.get("--preset"), options=args.get("--options"))


def november(org: Org) -> pd.DataFrame:
    """The org's deals closed in November 2026, with the owner's team (computed from the
    org's own tables, not by the kit)."""
    opps = org["opportunities"]
    team = org["reps"].set_index("rep_id")["team_id"]
    closed = opps[
        opps["is_closed"]
        & (opps["closed_at"] >= pd.Timestamp(f"{PERIOD}-01"))
        & (opps["closed_at"] < pd.Timestamp("2026-12-01"))
    ]
    return closed.assign(team_id=closed["owner_rep_id"].map(team))


# ---------------------------------------------------------------------------------------------
# The org itself, and each kind read back (fast)
# ---------------------------------------------------------------------------------------------


def test_the_foreign_org_gives_every_rep_won_lost_and_open_deals_in_the_month(org):
    """Grain: one rep. Every report has something to show: in November each rep won and lost
    deals, and has deals open in each open stage at the export."""
    closed = november(org)
    opps = org["opportunities"]
    for rep in org["reps"]["rep_id"]:
        mine = closed[closed["owner_rep_id"] == rep]
        assert mine["is_won"].any() and (~mine["is_won"]).any(), rep
        open_stages = set(opps.loc[(opps["owner_rep_id"] == rep) & ~opps["is_closed"], "stage"])
        assert open_stages == {"Engaging", "Qualifying", "Negotiating"}, rep
    assert opps["created_at"].min() >= pd.Timestamp("2025-08-01")
    assert not {"revenue", "spend"} & set(org.tables)
    ids = [*org["teams"]["team_id"], *org["reps"]["rep_id"]]
    assert any(" " in i for i in ids) and any(not i.isascii() for i in ids)
    folded = Counter(i.casefold() for i in org["reps"]["rep_id"])
    assert max(folded.values()) == 2  # two reps whose names differ only by case


@pytest.mark.parametrize("kind", list(FILE_WRITERS))
def test_each_input_kind_reads_back_the_orgs_deals_owners_and_teams(kind, org, tmp_path):
    """Grain: one deal. Each kind gives every deal of the org, owned by the rep the org says
    (under the kind's id for that rep), in that rep's team; the optional tables the kind does
    not carry are absent, not empty."""
    written = write_kind(kind, org, tmp_path)
    src = kpi_lib.load_source(spec_of(written), as_of=AS_OF)
    _assert_reads_back(src, written, org)


@pytest.mark.slow
def test_a_postgresql_database_reads_back_the_orgs_deals_owners_and_teams(org, postgres_url):
    """Grain: one deal, as for the file kinds, from tables in a PostgreSQL database."""
    written = write_postgres(org, postgres_url())
    src = kpi_lib.load_source(written.source, as_of=AS_OF)
    _assert_reads_back(src, written, org)


def test_preset_options_on_the_command_line_and_in_a_source_file_read_the_same(org, tmp_path):
    """Grain: one kpis.csv row. The HubSpot export read with ``--preset hubspot --options``
    and through a source file naming the same preset and options give the same cube, in
    ``kpis`` and ``validate`` alike."""
    written = write_hubspot(org, tmp_path / "hubspot")
    flags = dict(zip(written.args[::2], written.args[1::2], strict=True))
    source_file = tmp_path / "hubspot.source.yaml"
    source_file.write_text(
        yaml.safe_dump({"path": "hubspot", "preset": "hubspot", "options": flags["--options"]})
    )
    cubes = []
    for n, args in enumerate([written.args, ["--source", str(source_file)]]):
        out = tmp_path / f"kpis-{n}.csv"
        common = ["--period", PERIOD, "--as-of", AS_OF]
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert main(["validate", *args, "--as-of", AS_OF]) == 0
            assert main(["kpis", *args, *common, "--out", str(out)]) == 0
        cubes.append(pd.read_csv(out, dtype={"scope_id": str}))
    pd.testing.assert_frame_equal(cubes[0], cubes[1])
    teams = set(cubes[0].loc[cubes[0]["scope"] == "team", "scope_id"])
    assert teams == set(org["teams"]["team_id"])


def _assert_reads_back(src, written: Written, org: Org) -> None:
    opps = src.frame("opportunities")
    owners = opps["owner_rep_id"].astype(str).value_counts().to_dict()
    expected = org["opportunities"]["owner_rep_id"].map(written.rep_ids).value_counts().to_dict()
    assert owners == expected
    reps = src.frame("reps").set_index("rep_id")["team_id"].astype(str).to_dict()
    for rep, team in zip(org["reps"]["rep_id"], org["reps"]["team_id"], strict=True):
        assert reps[written.rep_ids[rep]] == written.team_ids[team], rep
    for table in OPTIONAL:
        assert src.has(table) == (table not in written.missing), table


# ---------------------------------------------------------------------------------------------
# A whole batch from each kind (slow)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres_url():
    """A function giving the URL of a throwaway PostgreSQL 15 database, started on first use
    and kept for the module."""
    with contextlib.ExitStack() as stack:
        url: list[str] = []

        def get() -> str:
            if not url:
                url.append(stack.enter_context(throwaway_postgres()))
            return url[0]

        yield get


@dataclass
class Batch:
    """One kind's rendered and sent batch: the command outcomes and where the files are."""

    written: Written
    period_dir: Path
    render_exit: int
    send_exit: int
    log: str
    recipients: dict

    @property
    def manifest(self) -> dict:
        return json.loads((self.period_dir / "manifest.json").read_text(encoding="utf-8"))

    def kpis(self) -> pd.DataFrame:
        return pd.read_csv(
            self.period_dir / "kpis.csv",
            dtype={"period": str, "scope_id": str},
            keep_default_na=False,
            na_values=[""],
        )

    def report_file(self, role: str, scope_id: str) -> Path:
        (html,) = [
            r["html"]
            for r in self.manifest["reports"]
            if r["role"] == role and r["scope_id"] == scope_id
        ]
        return self.period_dir / html


@pytest.fixture(scope="module", params=BATCH_KINDS)
def batch(request, org, tmp_path_factory, postgres_url) -> Batch:
    """``render --period 2026-11 --as-of 2026-12-05`` from one kind with the shipped params/,
    then ``send`` without an SMTP host to the org's executive, Ventes Montréal's manager and
    José Núñez."""
    kind = request.param
    work = tmp_path_factory.mktemp(f"org-{kind}")
    written = write_kind(kind, org, work, postgres_url)
    out = work / "reports"
    recipients = recipients_for(written)
    recipients_file = work / "recipients.yaml"
    recipients_file.write_text(yaml.safe_dump(recipients, allow_unicode=True), encoding="utf-8")
    log = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stderr(log):
        for name in [v for v in os.environ if v.startswith("KPI_SMTP_")]:
            mp.delenv(name)
        render_exit = main(
            ["render", "--period", PERIOD, *written.args, "--out", str(out), "--as-of", AS_OF]
        )
        send_exit = main(
            ["send", "--period", PERIOD, "--out", str(out), "--recipients", str(recipients_file)]
        )
    return Batch(written, out / PERIOD, render_exit, send_exit, log.getvalue(), recipients)


def expected_scopes(batch: Batch, org: Org) -> set[tuple[str, str]]:
    """Every scope the org has in November, under the kind's ids."""
    w = batch.written
    return (
        {("company", "all")}
        | {("team", w.team_ids[t]) for t in org["teams"]["team_id"]}
        | {("rep", w.rep_ids[r]) for r in org.active_reps()}
    )


@pytest.mark.slow
def test_a_whole_batch_renders_every_report_from_each_input_kind(batch, org):
    """Grain: one report (role x scope). Exit 0, and every scope of the org (the company, each
    team, each rep working in November) has a report with status ok; nothing else but the
    scopes the kind adds itself."""
    assert batch.render_exit == 0, batch.log
    manifest = batch.manifest
    got = {(r["scope"], r["scope_id"]) for r in manifest["reports"]}
    assert (
        expected_scopes(batch, org)
        <= got
        <= expected_scopes(batch, org) | batch.written.extra_scopes
    )
    assert [r for r in manifest["reports"] if r["status"] != "ok"] == []
    assert manifest["counts"] == {"reports": len(got), "ok": len(got), "failed": 0}
    assert {(r["role"], r["scope"]) for r in manifest["reports"]} <= {
        (role, scope) for scope, role in ROLE_OF.items()
    }


@pytest.mark.slow
def test_each_report_file_exists_once_and_every_index_link_resolves(batch):
    """Grain: one report file. Each report of the manifest has its own file (names unique
    even ignoring case, as on macOS and Windows), the role folders hold nothing else, and
    every link of index.html opens an existing file."""
    manifest = batch.manifest
    files = [r["html"] for r in manifest["reports"]]
    assert len({f.casefold() for f in files}) == len(files)
    on_disk = {
        p.relative_to(batch.period_dir).as_posix()
        for role in ROLE_OF.values()
        for p in (batch.period_dir / role).glob("*")
    }
    assert on_disk == set(files)
    assert all(f.isascii() and " " not in f for f in files)
    links = Links((batch.period_dir / "index.html").read_text(encoding="utf-8")).hrefs
    assert set(files) <= {unquote(urlsplit(h).path) for h in links}
    for href in links:
        target = urlsplit(href)
        assert not target.scheme and not target.netloc, href
        assert (batch.period_dir / unquote(target.path)).is_file(), href


@pytest.mark.slow
def test_manifest_and_kpis_csv_keep_the_real_ids(batch, org):
    """Grain: one scope. The manifest and kpis.csv name teams and reps by the ids of the data,
    spaces, accents, slashes and case included, never by the file names."""
    scopes = expected_scopes(batch, org)
    manifest = {(r["scope"], r["scope_id"]) for r in batch.manifest["reports"]}
    kpis = batch.kpis()
    in_kpis = set(zip(kpis["scope"], kpis["scope_id"], strict=True))
    assert scopes <= manifest and scopes <= in_kpis
    for team in ("Ventes Montréal", "EMEA / Nordics"):  # the kind's id for them, as it is
        assert ("team", batch.written.team_ids[team]) in manifest
    names = {r["scope_id"]: r["scope_name"] for r in batch.manifest["reports"]}
    for rep in org.active_reps():
        assert names[batch.written.rep_ids[rep]] == rep  # the rep's name, as the org writes it


@pytest.mark.slow
def test_kpis_csv_counts_the_orgs_november_deals_for_the_company_and_each_team(batch, org):
    """Grain: one scope x KPI. Deals won, revenue (won deals standing in: the org has no
    revenue table) and win rate of kpis.csv equal the org's November deals counted here."""
    kpis = batch.kpis().set_index(["scope", "scope_id", "kpi"])["value"]
    closed = november(org)
    teams = closed["team_id"].map(batch.written.team_ids)  # the kind's teams (one, deals only)
    groups = [("company", "all", closed)] + [
        ("team", team, deals) for team, deals in closed.groupby(teams)
    ]
    for scope, scope_id, deals in groups:
        won = deals[deals["is_won"]]
        assert kpis[(scope, scope_id, "deals_won")] == len(won), scope_id
        assert kpis[(scope, scope_id, "revenue")] == pytest.approx(won["amount"].sum()), scope_id
        assert kpis[(scope, scope_id, "win_rate")] == pytest.approx(len(won) / len(deals))


@pytest.mark.slow
def test_a_non_demo_org_gets_no_demo_target_in_kpis_csv(batch):
    """Grain: one kpis.csv row. The org has no targets of its own, and the shipped
    params/targets.yaml belongs to the demo org: no row carries a target."""
    kpis = batch.kpis()
    assert len(kpis) > 0
    assert kpis["target"].isna().all(), kpis.dropna(subset=["target"]).head()


@pytest.mark.slow
def test_each_recipient_gets_a_digest_with_their_own_reports_attached(batch):
    """Grain: one recipient. One .eml each; its HTML attachments are exactly the reports of
    the scopes the recipient is granted (the company for the executive, the team for its
    manager, the rep's own), byte for byte."""
    assert batch.send_exit == 0, batch.log
    outbox = batch.period_dir / "outbox"
    people = batch.recipients["recipients"]
    assert sorted(p.name for p in outbox.glob("*.eml")) == sorted(
        f"{p['email']}.eml" for p in people
    )
    for person in people:
        msg = message_from_bytes(
            (outbox / f"{person['email']}.eml").read_bytes(), policy=policy.default
        )
        granted = {
            "executive": ("executive", "all"),
            "manager": ("manager", person.get("team_id")),
            "rep": ("rep", person.get("rep_id")),
        }[person["role"]]
        assert html_attachments(msg) == [batch.report_file(*granted).read_bytes()], person["email"]


@pytest.mark.slow
def test_a_salesforce_export_renders_a_month_its_stage_history_does_not_reach(org, tmp_path):
    """Grain: one report. OpportunityHistory starts in March 2026 (the org moved to
    Salesforce then): no deal open at the end of February has a row of it. February still
    renders, every report ok (it died in details._stage_at: ArrowInvalid, 'Closed Lost' as a
    double)."""
    written = write_salesforce_api(org, tmp_path / "salesforce")
    out = tmp_path / "reports"
    log = io.StringIO()
    with contextlib.redirect_stderr(log):
        code = main(
            ["render", "--period", "2026-02", *written.args, "--out", str(out), "--as-of", AS_OF]
        )
    assert code == 0, log.getvalue()
    manifest = json.loads((out / "2026-02" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["counts"]["failed"] == 0 and manifest["counts"]["ok"] > len(org["teams"])


def html_attachments(msg: EmailMessage) -> list[bytes]:
    return [
        part.get_payload(decode=True)
        for part in msg.iter_attachments()
        if part.get_content_type() == "text/html"
    ]


class Links(HTMLParser):
    """The ``href`` of every link of a page."""

    def __init__(self, text: str):
        super().__init__()
        self.hrefs: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.hrefs.append(href)
