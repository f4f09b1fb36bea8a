"""KPI alerts: opt-in rules, checked strictly; a rule fires for a scope's owner once per rule,
scope and period, never again on a rerun.

The batches are hand-made (``tests/conftest.py``): rep r1 of team east wins one deal of 100 a
month for a year, then five in October 2026, so October's revenue of r1 and of east lies
outside its normal range (the twelve months before: 100 each, a range of exactly 100); r3 of
team west goes on winning one deal a month, r2 wins nothing (zeros, a range of 0: normal).
"""

from __future__ import annotations

from email import message_from_bytes, policy
from pathlib import Path

import pandas as pd
import pytest
import yaml
from _delivery import smtp_server, write_stand_ins
from _webhooks import webhook_server
from conftest import source, won

from kpi_lib import cli
from kpi_lib.errors import ParamsError
from kpi_lib.metrics.batch import prepare_batch
from kpi_lib.metrics.month_to_date import mtd_comparison
from kpi_lib.periods import Period
from kpi_lib.publish.alerts import evaluate, load_alerts, send_alerts
from kpi_lib.publish.digest import Figures, load_mtd
from kpi_lib.publish.ledger import Ledger
from kpi_lib.publish.retry import RetryPolicy
from kpi_lib.publish.send import smtp_settings

OCT = Period.parse("2026-10")
TARGETS = {"revenue": {"team": 1000}}
RULES = {
    "rules": [
        {
            "name": "out-of-range",
            "when": "outside_normal_range",
            "kpis": ["revenue"],
            "scopes": ["team", "rep"],
        },
        {"name": "behind", "when": "below_target", "kpis": ["revenue"], "share": 0.8},
    ]
}
FAST = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02)


def year_then_october(october_r1: int = 5) -> list[dict]:
    deals = []
    for i, month in enumerate(pd.period_range("2025-10", "2026-09", freq="M")):
        deals += [won(f"a{i}", f"{month}-15", 100, "r1"), won(f"c{i}", f"{month}-15", 100, "r3")]
    deals += [won(f"b{j}", f"2026-10-{10 + j}", 100, "r1") for j in range(october_r1)]
    return [*deals, won("c99", "2026-10-15", 100, "r3")]


def batch_dir(folder: Path, deals, as_of="2026-11-05", period=OCT) -> Path:
    """``folder/<period>/`` with a hand-made batch (its source a folder of Parquet tables, as
    a real one is a path) and a stand-in report per scope."""
    crm = folder / "crm"
    crm.mkdir(parents=True, exist_ok=True)
    for name, frame in source(deals).frames.items():
        frame.to_parquet(crm / f"{name}.parquet", index=False)
    period_dir = folder / period.label
    batch = prepare_batch(
        str(crm), period, out_dir=period_dir / "_data", as_of=as_of, targets=TARGETS
    )
    write_stand_ins(period_dir, batch)
    return period_dir


def people(path: Path, hook: str | None = None) -> Path:
    entries = [
        {"email": "ceo@example.com", "name": "Dana", "role": "executive"},
        {"email": "east@example.com", "name": "Eve", "role": "manager", "team_id": "east"},
        {"email": "west@example.com", "name": "Walt", "role": "manager", "team_id": "west"},
        {"email": "ann@example.com", "name": "Ann", "role": "rep", "rep_id": "r1"},
    ]
    if hook:
        entries += [
            {"slack": hook + "/r1", "name": "#ann", "role": "rep", "rep_id": "r1"},
            {"teams": hook + "/r3", "name": "Cy", "role": "rep", "rep_id": "r3"},
        ]
    path.write_text(yaml.safe_dump({"recipients": entries, "report_url": "https://r.example/kpi"}))
    return path


def rules(path: Path, data: dict = RULES) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# --------------------------------------------------------------------------------------------
# The file, checked strictly
# --------------------------------------------------------------------------------------------


def one(**rule) -> dict:
    return {"rules": [{"name": "r", "when": "outside_normal_range", **rule}]}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"rule": []}, "expected a mapping with a 'rules:' list"),
        ({"rules": [], "extra": 1}, "unknown keys ['extra']"),
        (one(kpi=["revenue"]), "rule 1 (r): unknown keys ['kpi']"),
        (one(kpis=["revnue"]), "rule 1 (r): unknown KPIs ['revnue']; known: "),
        (one(when="sometimes"), "when 'sometimes' is not one of"),
        (one(scopes=["region"]), "unknown scopes ['region']"),
        (one(scopes="team"), "'scopes' must be a non-empty list"),
        (one(share=0.8), "'share' belongs to a below_target rule"),
        ({"rules": [{"name": "r", "when": "below_target", "share": "most"}]}, "share 'most'"),
        ({"rules": [{"name": "r", "when": "below_target", "share": 0}]}, "share 0 must be"),
        ({"rules": [{"name": "a b", "when": "below_target"}]}, "'name' must be"),
        ({"rules": [one()["rules"][0], one()["rules"][0]]}, "rule 2 (r): a rule named 'r'"),
    ],
)
def test_a_bad_alerts_file_is_an_error_naming_the_file_and_the_rule(tmp_path, data, message):
    path = rules(tmp_path / "alerts.yaml", data)
    with pytest.raises(ParamsError) as err:
        load_alerts(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_a_scheduled_run_with_a_bad_alerts_file_stops_with_exit_2_before_any_work(tmp_path, capsys):
    path = rules(tmp_path / "alerts.yaml", one(kpis=["revnue"]))
    code = cli.main(
        ["mtd", "--today", "2026-11-15", "--out", str(tmp_path / "r"), "--alerts", str(path)]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: {path}: rule 1 (r): unknown KPIs ['revnue']")
    assert not (tmp_path / "r" / "2026-11").exists()


def test_the_shipped_rules_of_the_docs_are_valid(tmp_path):
    assert [r.name for r in load_alerts(rules(tmp_path / "a.yaml"))] == ["out-of-range", "behind"]


# --------------------------------------------------------------------------------------------
# What fires, on hand-made data
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def october(tmp_path_factory) -> Path:
    return batch_dir(tmp_path_factory.mktemp("oct"), year_then_october())


def fired(period_dir: Path, data: dict) -> list[tuple[str, str, str]]:
    from kpi_lib.metrics.batch import Batch

    batch = Batch.load(period_dir / "_data")
    figures = Figures(batch, load_mtd(period_dir, batch))
    chosen = load_alerts(rules(period_dir.parent / "alerts.yaml", data))
    return [(a.rule.name, a.scope, a.scope_id) for a in evaluate(chosen, figures)]


def test_an_unusual_kpi_fires_its_rule_for_the_scopes_outside_their_range(october):
    assert fired(october, RULES) == [
        ("out-of-range", "team", "east"),
        ("out-of-range", "rep", "r1"),
        ("behind", "team", "east"),  # 500 of 1,000: 50%
        ("behind", "team", "west"),  # 100 of 1,000
    ]
    every_scope = {"rules": [{"name": "x", "when": "outside_normal_range", "kpis": ["revenue"]}]}
    assert ("x", "company", "all") in fired(october, every_scope)
    steady = {"rules": [{"name": "x", "when": "outside_normal_range", "kpis": ["win_rate"]}]}
    assert fired(october, steady) == []  # every deal won, every month: nothing unusual


def test_a_month_to_date_fires_when_its_projection_is_below_the_share_of_the_target(tmp_path):
    # 1-10 October: r1 has won 100 (31 days / 10 x 100 = 310, 31% of east's 1,000); r3 900.
    deals = [won("a", "2026-10-03", 100, "r1"), won("c", "2026-10-05", 900, "r3")]
    period_dir = batch_dir(tmp_path, deals, as_of="2026-10-10")
    from kpi_lib.metrics.batch import Batch

    batch = Batch.load(period_dir / "_data")
    mtd_comparison(source(deals), batch.as_of, targets=TARGETS).to_csv(
        period_dir / "mtd.csv", index=False
    )
    data = {"rules": [{"name": "behind", "when": "below_target", "share": 0.8}]}
    assert fired(period_dir, data) == [("behind", "team", "east")]  # west projects 2,790
    result = send_alerts(
        OCT,
        tmp_path,
        alerts=rules(tmp_path / "a.yaml", data),
        recipients=people(tmp_path / "p.yaml"),
        log=lambda _: None,
    )
    assert result.sent == ["east@example.com (behind, east)"]
    (eml,) = (period_dir / "outbox" / "alerts").glob("*.eml")
    text = message_from_bytes(eml.read_bytes(), policy=policy.default).get_content()
    assert "is projected at $310 by month end, 31% of the $1K target (alert below 80%)" in text


# --------------------------------------------------------------------------------------------
# Sent once per rule, scope and period
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_each_owner_gets_one_alert_per_rule_scope_and_period_and_none_on_a_rerun(october, tmp_path):
    import shutil

    out = tmp_path / "reports"
    shutil.copytree(october, out / OCT.label)
    path = rules(tmp_path / "alerts.yaml")
    with smtp_server() as (inbox, port), webhook_server() as hooks:
        recipients = people(tmp_path / "people.yaml", hooks.url("/hook"))
        kwargs = dict(
            alerts=path,
            recipients=recipients,
            smtp=smtp_settings("127.0.0.1", port),
            retry=FAST,
            log=lambda _: None,
        )
        first = send_alerts(OCT, out, **kwargs)
        assert not first.failed and len(first.sent) == 5
        assert inbox.recipients() == [
            "ann@example.com",
            "east@example.com",
            "east@example.com",
            "west@example.com",
        ]
        assert [p for p, _, _ in hooks.requests] == ["/hook/r1"]  # r3's channel: nothing unusual
        (ann,) = inbox.to("ann@example.com")
        assert ann["Subject"] == "KPI alert: Ann — a KPI outside its normal range (October 2026)"
        body = ann.get_content()
        assert "above its normal" in body and "$500" in body
        assert "https://r.example/kpi/2026-10/rep/r1.html" in body
        slack = hooks.posts("/hook/r1")[0]
        assert slack["blocks"][0]["text"]["text"] == ann["Subject"]

        again = send_alerts(OCT, out, **kwargs)
        assert again.sent == [] and len(again.already_sent) == 5
        assert len(inbox.messages) == 4 and len(hooks.requests) == 1

    ledger = Ledger(out / OCT.label / "outbox" / "ledger.jsonl")
    keys = sorted(k for k in ledger.entries if k.startswith("alert|"))
    assert "alert|out-of-range|rep|r1|2026-10|slack:#ann" in keys
    assert "alert|behind|team|west|2026-10|west@example.com" in keys and len(keys) == 5


def test_a_held_back_batch_sends_no_alert_and_the_ledger_says_why(october, tmp_path):
    import shutil

    out = tmp_path / "reports"
    shutil.copytree(october, out / OCT.label)
    result = send_alerts(
        OCT,
        out,
        alerts=rules(tmp_path / "a.yaml"),
        recipients=people(tmp_path / "p.yaml"),
        hold="held back: stale source",
        log=lambda _: None,
    )
    assert result.sent == [] and len(result.held) == 4
    assert not (out / OCT.label / "outbox" / "alerts").exists()
    ledger = Ledger(out / OCT.label / "outbox" / "ledger.jsonl")
    assert {e["reason"] for e in ledger.held.values()} == {"held back: stale source"}


def test_without_an_alerts_file_nothing_is_evaluated(october, tmp_path, capsys):
    import shutil

    out = tmp_path / "reports"
    shutil.copytree(october, out / OCT.label)
    recipients = people(tmp_path / "p.yaml")
    assert send_alerts(OCT, out, recipients=recipients, log=lambda _: None).fired == []
    rules(tmp_path / "alerts.yaml")  # beside the recipients file: the default
    code = cli.main(
        ["alerts", "--period", "2026-10", "--out", str(out), "--recipients", str(recipients)]
    )
    assert code == 0
    assert "4 alerts fired" in capsys.readouterr().err
