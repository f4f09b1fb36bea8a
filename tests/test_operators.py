"""Operators hear of a bad run first: one notice for a failed report, a missing source, a stale
source, a missing or shrunken table; the recipients concerned get no digest; a healthy run
sends the operators nothing.

Each case runs ``python -m kpi_lib monthly`` (in this process, the clock set by ``KPI_TODAY``)
on a small demo CRM written as CSV files, renders real batches with a stand-in notebook (five
reports), and delivers to a real SMTP server on loopback (``tests/_delivery.py``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from _delivery import smtp_server
from _notebooks import stand_in_notebook

from kpi_lib import cli
from kpi_lib.publish.ledger import Ledger

pytestmark = pytest.mark.slow

OPS = "ops@example.com"
PEOPLE = {
    "ceo@example.com": {"name": "Dana Whitfield", "role": "executive"},
    "nae@example.com": {"name": "Grace Okafor", "role": "manager", "team_id": "na-ent"},
    "nam@example.com": {"name": "Liam Becker", "role": "manager", "team_id": "na-mm"},
    "r001@example.com": {"name": "Amira Yamamoto", "role": "rep", "rep_id": "R001"},
    "r002@example.com": {"name": "Jamal O'Brien", "role": "rep", "rep_id": "R002"},
}
ROLES = {
    "executive": {"notebook": "notebooks/stand_in.ipynb", "scope": "company"},
    "manager": {
        "notebook": "notebooks/stand_in.ipynb",
        "scope": "team",
        "scope_ids": ["na-ent", "na-mm"],
    },
    "rep": {"notebook": "notebooks/stand_in.ipynb", "scope": "rep", "scope_ids": ["R001", "R002"]},
}
FAIL_R002 = "if scope_id == 'R002':\n    raise RuntimeError('the R002 notebook broke')"


def project(folder: Path, source_end: str = "2026-10", notebook_cell: str = "") -> Path:
    """A project folder: the report matrix, a stand-in notebook, recipients with an operator,
    and ``src/``, the demo CRM (scale 0.2: six reps, one per team) as CSV files."""
    from kpi_lib.data.demo import write_demo_data

    stand_in_notebook(folder / "notebooks" / "stand_in.ipynb", notebook_cell)
    (folder / "params").mkdir(parents=True, exist_ok=True)
    (folder / "params" / "reports.yaml").write_text(yaml.safe_dump({"roles": ROLES}))
    people = [{"email": e, **p} for e, p in PEOPLE.items()]
    (folder / "recipients.yaml").write_text(
        yaml.safe_dump(
            {
                "sender": "Sales KPI Kit <kpi-reports@example.com>",
                "operators": [f"Sales Ops <{OPS}>"],
                "recipients": people,
            }
        )
    )
    write_demo_data(folder / "src", end=source_end, seed=7, scale=0.2, fmt="csv")
    return folder


def monthly(folder: Path, today: str, port: int, monkeypatch, *extra: str) -> int:
    """``python -m kpi_lib monthly`` in ``folder`` on ``today``, mailing through ``port``."""
    monkeypatch.chdir(folder)
    monkeypatch.setenv("KPI_TODAY", today)
    monkeypatch.setenv("KPI_CHROMIUM", str(folder / "no-chromium"))  # digests without PDFs
    for name in ("KPI_SMTP_HOST", "KPI_SMTP_PORT", "KPI_SMTP_USER", "KPI_SMTP_SECURITY"):
        monkeypatch.delenv(name, raising=False)
    args = ["monthly", "--out", "reports", "--recipients", "recipients.yaml", "--jobs", "2"]
    args += ["--smtp-host", "127.0.0.1", "--smtp-port", str(port)]
    args += ["--retries", "2", "--retry-delay", "0.01", "--source", "src", *extra]
    return cli.main(args)


def notice_of(inbox) -> str:
    """The one operators' notice the run sent (its text); fails unless there is exactly one."""
    notices = inbox.to(OPS)
    assert len(notices) == 1, [m["Subject"] for m in notices]
    msg = notices[0]
    assert msg["Auto-Submitted"] == "auto-generated"
    return f"Subject: {msg['Subject']}\n" + msg.get_content()


def digests_to(inbox) -> list[str]:
    return sorted(r for r in inbox.recipients() if r != OPS)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    """A project whose September 2026 was rendered and sent without a problem (its manifest is
    the last batch the October runs are compared with)."""
    folder = project(tmp_path_factory.mktemp("baseline"))
    mp = pytest.MonkeyPatch()
    try:
        with smtp_server() as (inbox, port):
            assert monthly(folder, "2026-10-05", port, mp) == 0
            folder.joinpath("baseline-inbox.json").write_text(json.dumps(inbox.recipients()))
    finally:
        mp.undo()
    return folder


def copy_of(baseline: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(baseline, tmp_path / "project"))


# --------------------------------------------------------------------------------------------
# A healthy run
# --------------------------------------------------------------------------------------------


def test_a_healthy_run_sends_every_digest_and_the_operators_nothing(baseline):
    sent = json.loads((baseline / "baseline-inbox.json").read_text())
    assert sent == sorted(PEOPLE)  # one digest each, no notice
    manifest = json.loads((baseline / "reports" / "2026-09" / "manifest.json").read_text())
    source = manifest["source"]
    assert source["tables"]["opportunities"] > 0 and source["tables"]["spend"] > 0
    assert source["newest"]["activities"] >= "2026-09-01"  # through the report date
    assert not (baseline / "reports" / "2026-09" / "outbox" / "operators").exists()


# --------------------------------------------------------------------------------------------
# A report fails: its recipient gets nothing, the others their digest, the operators one notice
# --------------------------------------------------------------------------------------------


def test_a_failed_report_holds_its_recipients_digest_and_tells_the_operators_once(
    tmp_path, monkeypatch, capsys
):
    folder = project(tmp_path / "project", notebook_cell=FAIL_R002)
    with smtp_server() as (inbox, port):
        code = monthly(folder, "2026-11-05", port, monkeypatch)
    assert code == 1
    assert digests_to(inbox) == sorted(set(PEOPLE) - {"r002@example.com"})
    notice = notice_of(inbox)
    assert notice.startswith("Subject: KPI kit: monthly 2026-10 ")
    assert "Period:    2026-10" in notice
    assert "report rep/R002 failed" in notice and "the R002 notebook broke" in notice
    assert "not delivered to r002@example.com: report rep/R002 did not render" in notice
    assert "_notebooks/rep/R002.log" in notice  # where the traceback is
    assert "python -m kpi_lib monthly" in notice and "--today 2026-11-05" in notice
    assert "Log (last" in notice and "monthly 2026-10 rep/R001 ok" in notice
    ledger = Ledger(folder / "reports" / "2026-10" / "outbox" / "ledger.jsonl")
    held = ledger.held[Ledger.key("r002@example.com", "2026-10/final")]
    assert held["status"] == "held" and "R002 did not render" in held["reason"]
    assert Ledger.key("r002@example.com", "2026-10/final") not in ledger
    assert "operators notified (sent to Sales Ops <ops@example.com>" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# The source is gone, stale, or lost a table or rows: nothing is sent, the operators hear of it
# --------------------------------------------------------------------------------------------


def test_a_missing_source_stops_the_run_with_one_notice_and_no_digest(
    baseline, tmp_path, monkeypatch, capsys
):
    folder = copy_of(baseline, tmp_path)
    shutil.rmtree(folder / "src")
    with smtp_server() as (inbox, port):
        code = monthly(folder, "2026-11-05", port, monkeypatch)
    assert code == 2
    assert digests_to(inbox) == []
    notice = notice_of(inbox)
    assert "monthly 2026-10 stopped" in notice and "src" in notice
    assert "does not exist" in notice
    err = capsys.readouterr().err
    assert "error: " in err and "operators notified" in err


def test_a_stale_source_sends_the_ceo_no_digest_of_zeros(tmp_path, monkeypatch):
    """The issue's case: data that ends in June, the monthly run of December 5 (November)."""
    folder = project(tmp_path / "project", source_end="2026-06")
    with smtp_server() as (inbox, port):
        code = monthly(folder, "2026-12-05", port, monkeypatch)
        assert code == 1
        assert digests_to(inbox) == []
        notice = notice_of(inbox)
        assert "held back, nothing sent" in notice.splitlines()[0]
        assert "stale source: the newest activity is from 2026-06-30" in notice
        assert "before 2026-11-01 when 2026-11 starts" in notice
        assert "--today 2026-12-05 --force-send" in notice
        outbox = folder / "reports" / "2026-11" / "outbox"
        ledger = Ledger(outbox / "ledger.jsonl")
        assert not ledger.entries
        assert {e["email"] for e in ledger.held.values()} == set(PEOPLE)
        assert all("stale source" in e["reason"] for e in ledger.held.values())

        # Sales ops checked: the figures are what they are. --force-send sends, and says so.
        assert monthly(folder, "2026-12-05", port, monkeypatch, "--force-send") == 0
        assert digests_to(inbox) == sorted(PEOPLE)
        assert len(inbox.to(OPS)) == 1  # no second notice for a run that went as asked
        ledger = Ledger(outbox / "ledger.jsonl")
        assert {e["email"] for e in ledger.entries.values()} == set(PEOPLE)
        assert all("stale source" in e["forced"] for e in ledger.entries.values())


def test_a_table_the_last_batch_had_gone_missing_holds_everything_back(
    baseline, tmp_path, monkeypatch
):
    folder = copy_of(baseline, tmp_path)
    (folder / "src" / "spend.csv").unlink()
    with smtp_server() as (inbox, port):
        code = monthly(folder, "2026-11-05", port, monkeypatch)
    assert code == 1
    assert digests_to(inbox) == []
    notice = notice_of(inbox)
    assert "missing table: spend" in notice and "the last batch (2026-09)" in notice


def test_a_table_that_shrank_by_more_than_the_allowed_share_holds_everything_back(
    baseline, tmp_path, monkeypatch
):
    folder = copy_of(baseline, tmp_path)
    path = folder / "src" / "activities.csv"
    activities = pd.read_csv(path, dtype=str, keep_default_na=False)
    activities.iloc[::2].to_csv(path, index=False)  # every other row: half the table
    with smtp_server() as (inbox, port):
        code = monthly(folder, "2026-11-05", port, monkeypatch)
        assert code == 1
        assert digests_to(inbox) == []
        notice = notice_of(inbox)
        assert "shrunken table: activities has" in notice
        assert "-50%, more than the 20% allowed" in notice

        # Rendered again from the same export, it is still compared with September's batch
        assert monthly(folder, "2026-11-05", port, monkeypatch, "--rerender") == 1
        assert digests_to(inbox) == []
        assert len(inbox.to(OPS)) == 2 and "(2026-09)" in inbox.to(OPS)[1].get_content()

        # A drop the org expects: a looser threshold lets the same batch go out.
        assert monthly(folder, "2026-11-05", port, monkeypatch, "--max-row-drop", "0.6") == 0
        assert digests_to(inbox) == sorted(PEOPLE)
        assert len(inbox.to(OPS)) == 2  # no notice for a run that went well
