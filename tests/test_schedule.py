"""Scheduled runs: a fake clock picks the period, a lock keeps runs apart, MTD compares fairly.

Today comes from ``--today`` or ``KPI_TODAY``; data runs through yesterday. ``monthly`` renders
the last complete month; ``mtd`` the month containing yesterday, so on the 1st it renders the
previous month, complete.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from conftest import source, won

from kpi_lib import cli
from kpi_lib.errors import PeriodError
from kpi_lib.metrics.month_to_date import mtd_comparison, same_days_previous
from kpi_lib.publish import schedule
from kpi_lib.publish.schedule import RunLocked, monthly_plan, mtd_plan, run_lock

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "today, period, as_of",
    [
        ("2026-11-28", "2026-10", "2026-11-27"),
        ("2026-11-01", "2026-10", "2026-10-31"),
        ("2027-01-01", "2026-12", "2026-12-31"),  # January: the previous month is last year's
        ("2027-01-20", "2026-12", "2027-01-19"),
        ("2028-03-01", "2028-02", "2028-02-29"),  # leap year
    ],
)
def test_monthly_renders_the_last_complete_month(today, period, as_of):
    plan = monthly_plan(date.fromisoformat(today))
    assert (plan.period.label, plan.as_of.isoformat(), plan.partial) == (period, as_of, False)


@pytest.mark.parametrize(
    "today, period, as_of, partial",
    [
        ("2026-11-15", "2026-11", "2026-11-14", True),
        ("2026-11-02", "2026-11", "2026-11-01", True),
        ("2026-11-01", "2026-10", "2026-10-31", False),  # the 1st: last month, now complete
        ("2027-01-01", "2026-12", "2026-12-31", False),
        ("2027-01-10", "2027-01", "2027-01-09", True),
        ("2026-12-31", "2026-12", "2026-12-30", True),
    ],
)
def test_mtd_renders_the_month_containing_yesterday(today, period, as_of, partial):
    plan = mtd_plan(date.fromisoformat(today))
    assert (plan.period.label, plan.as_of.isoformat(), plan.partial) == (period, as_of, partial)


def test_today_comes_from_the_option_then_the_environment_then_the_clock(monkeypatch):
    from kpi_lib.clock import today

    monkeypatch.setenv("KPI_TODAY", "2027-01-01")
    assert today() == date(2027, 1, 1)
    assert today("2026-05-05") == date(2026, 5, 5)
    monkeypatch.delenv("KPI_TODAY")
    assert today() == date.today()
    monkeypatch.setenv("KPI_TODAY", "01/01/2027")
    with pytest.raises(PeriodError, match="KPI_TODAY '01/01/2027' is not a date"):
        today()


@pytest.mark.parametrize(
    "as_of, previous",
    [
        ("2026-11-14", "2026-10-14"),
        ("2027-01-15", "2026-12-15"),
        ("2026-03-31", "2026-02-28"),  # capped at the shorter month's end
        ("2028-03-30", "2028-02-29"),
        ("2026-10-31", "2026-09-30"),
    ],
)
def test_the_same_days_of_the_previous_month_end_on_the_matching_day(as_of, previous):
    assert same_days_previous(as_of).date().isoformat() == previous


def test_mtd_compares_to_date_with_the_same_days_and_projects_additive_kpis():
    # October 1-10 (as of Oct 10): won 100 (Oct 3) and 200 (Oct 9); 999 on Oct 12 is not known yet.
    # September 1-10: won 50 (Sep 5); 400 on Sep 20 is outside the same days.
    src = source(
        [
            won("o1", "2026-10-03", 100),
            won("o2", "2026-10-09", 200),
            won("o3", "2026-10-12", 999),
            won("s1", "2026-09-05", 50),
            won("s2", "2026-09-20", 400),
        ]
    )
    table = mtd_comparison(src, "2026-10-10", targets={"revenue": {"company": 1000.0}})
    rev = table[(table["kpi"] == "revenue") & (table["scope"] == "company")].iloc[0]
    assert (rev["value"], rev["previous_same_days"]) == (300.0, 50.0)
    assert rev["change"] == pytest.approx(300 / 50 - 1)
    assert rev["projection"] == pytest.approx(300 * 31 / 10)  # 930
    assert rev["projected_attainment"] == pytest.approx(0.93)
    assert (rev["days_elapsed"], rev["days_in_period"], rev["previous_as_of"]) == (
        10,
        31,
        "2026-09-10",
    )
    win = table[(table["kpi"] == "avg_deal_size") & (table["scope"] == "company")].iloc[0]
    assert win["value"] == 150.0 and pd.isna(win["projection"])  # averages are not projected


# --------------------------------------------------------------------------------------------
# The lock and the CLI (the renderer replaced by a recorder: the periods are what is tested)
# --------------------------------------------------------------------------------------------


def test_a_second_run_is_refused_while_the_lock_is_held(tmp_path):
    with run_lock(tmp_path, "monthly 2026-10"):
        with pytest.raises(RunLocked, match=r"held by pid \d+ \(monthly 2026-10\)"):
            with run_lock(tmp_path):
                pass
    with run_lock(tmp_path):  # released
        pass


def test_the_cli_exits_75_when_another_run_holds_the_lock(tmp_path, capsys):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from kpi_lib.publish.schedule import run_lock\n"
            f"with run_lock({str(tmp_path)!r}, 'mtd 2026-11'):\n"
            "    print('locked', flush=True); time.sleep(30)",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        code = cli.main(["mtd", "--today", "2026-11-15", "--out", str(tmp_path)])
    finally:
        holder.kill()
        holder.wait()
    assert code == 75
    assert f"error: {tmp_path / '.lock'} is held by pid {holder.pid} (mtd 2026-11)" in (
        capsys.readouterr().err
    )


class FakeRender:
    """Stands in for ``render_batch``: records its calls, writes a manifest like the real one."""

    def __init__(self):
        self.calls: list[tuple[str, str]] = []

    def __call__(self, period, source, out, jobs, as_of, targets, progress, matrix):
        from kpi_lib.publish.index import BatchResult, ReportOutcome

        self.calls.append((period.label, as_of))  # the plan's Period, typed
        period_dir = Path(out) / period.label
        (period_dir / "_data").mkdir(parents=True, exist_ok=True)
        (period_dir / "_data" / "batch.json").write_text("{}")
        reports = [
            ReportOutcome(
                "executive",
                "company",
                "all",
                "Company",
                "n",
                "executive/all.html",
                "x",
                status="ok",
                seconds=1.5,
            ),
            ReportOutcome(
                "rep", "rep", "R001", "Javier", "n", "rep/R001.html", "x", status="ok", seconds=2.0
            ),
        ]
        (period_dir / "manifest.json").write_text(
            json.dumps({"as_of": as_of, "counts": {"reports": 2, "ok": 2, "failed": 0}})
        )
        return BatchResult(period.label, period_dir, reports, "t0", "t1", 3.5, as_of=as_of)


@pytest.fixture
def fake_render(monkeypatch):
    import kpi_lib.publish.render

    recorder = FakeRender()
    monkeypatch.setattr(kpi_lib.publish.render, "render_batch", recorder)
    monkeypatch.setattr(schedule, "_write_mtd", lambda *a: None)
    return recorder


@pytest.mark.parametrize(
    "command, today, period, as_of",
    [
        ("monthly", "2027-01-01", "2026-12", "2026-12-31"),
        ("monthly", "2027-01-17", "2026-12", "2027-01-16"),
        ("mtd", "2027-01-01", "2026-12", "2026-12-31"),
        ("mtd", "2027-01-17", "2027-01", "2027-01-16"),
        ("mtd", "2026-11-01", "2026-10", "2026-10-31"),
    ],
)
def test_the_fake_clock_drives_monthly_and_mtd_to_the_right_period(
    command, today, period, as_of, fake_render, monkeypatch, tmp_path, capsys
):
    monkeypatch.setenv("KPI_TODAY", today)
    extra = ["--no-send"] if command == "monthly" else []
    assert cli.main([command, "--out", str(tmp_path), *extra]) == 0
    assert fake_render.calls == [(period, as_of)]
    lines = capsys.readouterr().err.splitlines()
    assert any(f"{command} {period} executive/all ok in 1.5 s" in line for line in lines)
    assert any(f"{command} {period} rep/R001 ok in 2.0 s" in line for line in lines)


def test_a_rerun_does_not_render_a_batch_that_is_already_complete(fake_render, tmp_path, capsys):
    args = ["monthly", "--out", str(tmp_path), "--no-send"]
    assert cli.main([*args, "--today", "2026-11-02"]) == 0
    assert cli.main([*args, "--today", "2026-11-05"]) == 0
    assert fake_render.calls == [("2026-10", "2026-11-01")]
    assert "already rendered with data as of 2026-11-01" in capsys.readouterr().err
    assert cli.main([*args, "--today", "2026-11-05", "--rerender"]) == 0
    assert fake_render.calls[-1] == ("2026-10", "2026-11-04")


def test_mtd_renders_again_each_day_but_not_twice_a_day(fake_render, tmp_path):
    for day in ("2026-11-10", "2026-11-10", "2026-11-11"):
        assert cli.main(["mtd", "--out", str(tmp_path), "--today", day]) == 0
    assert fake_render.calls == [("2026-11", "2026-11-09"), ("2026-11", "2026-11-10")]


def test_make_monthly_and_mtd_call_the_cli():
    for target, command in (("monthly", "-m kpi_lib monthly"), ("mtd", "-m kpi_lib mtd")):
        dry = subprocess.run(
            ["make", "-n", target, "PY=python"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert command in dry and "--source" in dry and "--out reports" in dry


def _make(target: str, out: Path, today: str) -> subprocess.CompletedProcess:
    """``make <target>`` in the checkout, its reports in ``out``, today faked by ``KPI_TODAY``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KPI_", "MAKE", "MFLAGS"))}
    return subprocess.run(
        ["make", target, f"OUT={out}"],
        cwd=ROOT,
        env={**env, "KPI_TODAY": today},
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_make_monthly_then_mtd_on_a_fake_clock_render_and_send_once(tmp_path):
    """The cron lines of the README, end to end: real renders, real digests as .eml files."""
    out = tmp_path / "reports"
    first = _make("monthly", out, "2026-11-02")
    assert first.returncode == 0, first.stderr
    manifest = json.loads((out / "2026-10" / "manifest.json").read_text())
    assert manifest["as_of"] == "2026-11-01"  # data through yesterday
    assert manifest["counts"]["failed"] == 0 and manifest["counts"]["ok"] >= 40
    digests = sorted((out / "2026-10" / "outbox").glob("*.eml"))
    assert len(digests) == len(yaml_recipients())

    again = _make("monthly", out, "2026-11-05")  # cron fires again: nothing new to do
    assert again.returncode == 0, again.stderr
    assert "already rendered with data as of 2026-11-01" in again.stderr
    assert sorted((out / "2026-10" / "outbox").glob("*.eml")) == digests
    assert json.loads((out / "2026-10" / "manifest.json").read_text()) == manifest

    mtd = _make("mtd", out, "2026-11-15")
    assert mtd.returncode == 0, mtd.stderr
    partial = json.loads((out / "2026-11" / "manifest.json").read_text())
    assert partial["as_of"] == "2026-11-14" and partial["counts"]["failed"] == 0
    assert "to date" in (out / "2026-11" / "executive" / "all.html").read_text()


def yaml_recipients() -> list[dict]:
    """The recipients of ``params/recipients.yaml`` (one digest each)."""
    import yaml

    return yaml.safe_load((ROOT / "params" / "recipients.yaml").read_text())["recipients"]
