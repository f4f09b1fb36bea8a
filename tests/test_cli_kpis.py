"""`python -m kpi_lib kpis`: the cube as CSV from a folder of canonical CSVs (DESIGN.md 5)."""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import CONTRACT_COLUMNS, RANGE_COLUMNS, REPS, TEAMS, frame, lost, opp, won

REPO = Path(__file__).resolve().parents[1]
COLUMNS = CONTRACT_COLUMNS + RANGE_COLUMNS

# r1 (east): won 1000 on Oct 5, lost Oct 9; r3 (west): won 3000 on Oct 31 23:59; r2: open
# September: r1 won 500. November: r3 won 700 on Nov 1 00:00.
OPPS = [
    won("O1", "2026-10-05 10:00", 1000, "r1", created_at="2026-10-01 10:00"),  # 4-day cycle
    lost("O2", "2026-10-09", 400, "r1"),
    won("O3", "2026-10-31 23:59", 3000, "r3", created_at="2026-10-29 23:59"),  # 2-day cycle
    opp("O4", "r2"),
    won("O5", "2026-09-15", 500, "r1"),
    won("O6", "2026-11-01 00:00", 700, "r3"),
]


TARGETS_YAML = "revenue:\n  company: 8000\n  team: 2000\n  rep: 1000\n"


def write_source(folder: Path, opportunities=OPPS, **tables) -> Path:
    """Canonical CSVs in ``folder``, and ``targets.yaml`` beside it (not a table)."""
    folder.mkdir(parents=True, exist_ok=True)
    given = {"teams": TEAMS, "reps": REPS, "opportunities": opportunities, **tables}
    for name, rows in given.items():
        df = rows if isinstance(rows, pd.DataFrame) else frame(name, rows)
        df.to_csv(folder / f"{name}.csv", index=False)
    (folder.parent / "targets.yaml").write_text(TARGETS_YAML)
    return folder


def run_kpis(folder: Path, *args: str, default_targets: bool = False):
    """``python -m kpi_lib kpis --source folder ...`` from the repository root.

    Targets come from the ``targets.yaml`` beside ``folder`` unless ``default_targets``.
    """
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    command = [sys.executable, "-m", "kpi_lib", "kpis", "--source", str(folder), *args]
    if not default_targets:
        command += ["--targets", str(folder.parent / "targets.yaml")]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def parse(text: str) -> pd.DataFrame:
    return pd.read_csv(
        io.StringIO(text), dtype={"period": str, "scope": str, "scope_id": str, "kpi": str}
    )


def value(cube: pd.DataFrame, kpi: str, period: str, scope="company", scope_id="all") -> float:
    hit = cube[
        (cube["kpi"] == kpi)
        & (cube["period"] == period)
        & (cube["scope"] == scope)
        & (cube["scope_id"] == scope_id)
    ]
    assert len(hit) == 1, f"{len(hit)} rows for {kpi} {period} {scope}/{scope_id}"
    return float(hit["value"].iloc[0])


@pytest.fixture(scope="module")
def october(tmp_path_factory) -> pd.DataFrame:
    folder = write_source(tmp_path_factory.mktemp("crm") / "src")
    done = run_kpis(folder, "--period", "2026-10", "--as-of", "2026-11-28")
    assert done.returncode == 0, done.stderr
    return parse(done.stdout)


def test_kpis_prints_the_cube_as_csv_with_the_contract_columns(october):
    assert list(october.columns) == COLUMNS
    assert set(october["period"]) == {"2026-10"}
    assert set(october["scope"]) == {"company", "team", "rep"}
    assert set(october["scope_id"]) == {"all", "east", "west", "r1", "r2", "r3"}


@pytest.mark.parametrize(
    ("kpi", "scope", "scope_id", "expected"),
    [
        ("revenue", "company", "all", 4000),  # O1 1000 + O3 3000 (23:59 on Oct 31)
        ("revenue", "team", "east", 1000),
        ("revenue", "team", "west", 3000),
        ("revenue", "rep", "r2", 0),
        ("win_rate", "company", "all", 2 / 3),  # O1, O3 won; O2 lost
        ("win_rate", "rep", "r1", 1 / 2),
        ("avg_deal_size", "company", "all", 2000),  # 4000 / 2
        ("sales_cycle_days", "company", "all", 3),  # (4 + 2) / 2
        ("revenue_per_rep", "company", "all", 4000 / 3),
        ("revenue_growth_mom", "company", "all", 7),  # 4000 / 500 - 1
    ],
)
def test_kpis_csv_holds_hand_computed_values(october, kpi, scope, scope_id, expected):
    assert value(october, kpi, "2026-10", scope, scope_id) == pytest.approx(expected)


def test_kpis_csv_carries_targets_and_quota_attainment(october):
    revenue = october[(october["kpi"] == "revenue") & (october["scope"] == "company")]
    assert revenue["target"].tolist() == [8000]
    assert value(october, "quota_attainment", "2026-10") == pytest.approx(0.5)  # 4000 / 8000
    assert value(october, "quota_attainment", "2026-10", "team", "west") == 1.5  # 3000 / 2000


def test_kpis_runs_on_any_valid_source_with_the_default_targets_file(tmp_path):
    # DESIGN 5: `kpis --source PATH --period P` on a valid source succeeds; the repository's
    # params/targets.yaml (written for the demo teams) must not make another source bad input.
    folder = write_source(tmp_path / "src")
    done = run_kpis(folder, "--period", "2026-10", "--as-of", "2026-11-28", default_targets=True)
    assert done.returncode == 0, done.stderr
    assert value(parse(done.stdout), "revenue", "2026-10") == 4000


def test_kpis_csv_writes_na_as_empty_not_zero(october):
    assert math.isnan(value(october, "win_rate", "2026-10", "rep", "r2"))
    assert math.isnan(value(october, "revenue_growth_yoy", "2026-10"))


def test_kpis_out_writes_the_file(tmp_path):
    folder = write_source(tmp_path / "src")
    out = tmp_path / "out" / "kpis.csv"
    done = run_kpis(folder, "--period", "2026-10", "--as-of", "2026-11-28", "--out", str(out))
    assert done.returncode == 0, done.stderr
    cube = parse(out.read_text())
    assert list(cube.columns) == COLUMNS
    assert value(cube, "revenue", "2026-10") == 4000
    assert "2026-10,company,all,revenue" not in done.stdout  # the cube went to the file


def test_kpis_accepts_a_period_range(tmp_path):
    folder = write_source(tmp_path / "src")
    done = run_kpis(folder, "--period", "2026-09:2026-11", "--as-of", "2026-11-28")
    assert done.returncode == 0, done.stderr
    cube = parse(done.stdout)
    assert set(cube["period"]) == {"2026-09", "2026-10", "2026-11"}
    assert [value(cube, "revenue", p) for p in ("2026-09", "2026-10", "2026-11")] == [
        500,
        4000,
        700,
    ]


def test_kpis_accepts_a_quarter(tmp_path):
    folder = write_source(tmp_path / "src")
    done = run_kpis(folder, "--period", "2026-Q4", "--as-of", "2026-11-28")
    assert done.returncode == 0, done.stderr
    assert value(parse(done.stdout), "revenue", "2026-Q4") == 4700  # 1000 + 3000 + 700


def test_kpis_as_of_hides_deals_won_after_the_report_date(tmp_path):
    folder = write_source(tmp_path / "src")
    done = run_kpis(folder, "--period", "2026-10", "--as-of", "2026-10-31")
    assert done.returncode == 0, done.stderr
    assert value(parse(done.stdout), "revenue", "2026-10") == 4000  # the whole 31st counts
    done = run_kpis(folder, "--period", "2026-10", "--as-of", "2026-10-30")
    assert done.returncode == 0, done.stderr
    assert value(parse(done.stdout), "revenue", "2026-10") == 1000  # O3 is not won yet


def _without(rows, column):
    return pd.DataFrame([{k: v for k, v in r.items() if k != column} for r in rows])


@pytest.mark.parametrize(
    ("tables", "words"),
    [
        pytest.param(
            {"opportunities": _without(OPPS, "stage")},
            ["opportunities.csv", "opportunities", "stage"],
            id="missing-required-column",
        ),
        pytest.param(
            {"opportunities": [*OPPS, won("O1", "2026-10-07", 5)]},
            ["opportunities.csv", "opportunities", "opportunity_id", "O1"],
            id="duplicate-key",
        ),
        pytest.param(
            {"opportunities": [*OPPS, won("O9", "2026-10-07", 5, "r9")]},
            ["opportunities.csv", "opportunities", "owner_rep_id", "r9"],
            id="unknown-owner",
        ),
        pytest.param(
            {"opportunities": [*OPPS, opp("O9", is_closed=True, is_won=False)]},
            ["opportunities.csv", "opportunities", "closed_at", "O9"],
            id="closed-without-date",
        ),
        pytest.param(
            {"reps": _without(REPS, "team_id")},
            ["reps.csv", "reps", "team_id"],
            id="reps-without-team",
        ),
    ],
)
def test_kpis_bad_data_exits_2_naming_file_table_column_and_rows(tmp_path, tables, words):
    folder = write_source(tmp_path / "src", **tables)
    done = run_kpis(folder, "--period", "2026-10", "--as-of", "2026-11-28")
    assert done.returncode == 2, (done.returncode, done.stderr)
    for word in words:
        assert word in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert "period,scope" not in done.stdout  # no half-written cube


@pytest.mark.parametrize("period", ["2026-13", "2026-Q5", "Oct", "2026-12:2026-10"])
def test_kpis_bad_period_exits_2(tmp_path, period):
    folder = write_source(tmp_path / "src")
    done = run_kpis(folder, "--period", period, "--as-of", "2026-11-28")
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert period in done.stderr
    assert "Traceback" not in done.stderr


def test_kpis_bad_as_of_exits_2(tmp_path):
    folder = write_source(tmp_path / "src")
    done = run_kpis(folder, "--period", "2026-10", "--as-of", "someday")
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "someday" in done.stderr and "Traceback" not in done.stderr


def test_kpis_missing_source_path_exits_2(tmp_path):
    (tmp_path / "targets.yaml").write_text(TARGETS_YAML)
    done = run_kpis(tmp_path / "nowhere", "--period", "2026-10", "--as-of", "2026-11-28")
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "nowhere" in done.stderr
    assert "Traceback" not in done.stderr


def test_kpis_source_without_opportunities_exits_2(tmp_path):
    folder = write_source(tmp_path / "src")
    (folder / "opportunities.csv").unlink()
    done = run_kpis(folder, "--period", "2026-10", "--as-of", "2026-11-28")
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "opportunities" in done.stderr and "Traceback" not in done.stderr
