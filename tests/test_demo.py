"""The demo CRM generator: deterministic, complete, consistent, and shaped like a sales org."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from kpi_lib.data.demo import generate_demo_tables, write_demo_data
from kpi_lib.data.schema import TABLES
from kpi_lib.errors import ParamsError, PeriodError
from kpi_lib.periods import last_complete_month

END = "2026-10"
FIRST_MONTH = pd.Timestamp("2023-11-01")
HORIZON = pd.Timestamp("2026-11-01")  # first instant after the end month
DTYPES = {"id": "str", "str": "str", "ts": "datetime64", "bool": "bool", "num": "float64"}


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    return generate_demo_tables(END, seed=7)


def _is_kind(series: pd.Series, kind: str) -> bool:
    if kind == "ts":
        return pd.api.types.is_datetime64_dtype(series) and series.dt.tz is None
    return str(series.dtype) == DTYPES[kind]


# --- determinism -------------------------------------------------------------------------------


def test_same_seed_end_and_scale_give_identical_tables(tables):
    again = generate_demo_tables(END, seed=7)
    for name in TABLES:
        pd.testing.assert_frame_equal(tables[name], again[name], check_exact=True)


def test_another_seed_gives_other_data(tables):
    other = generate_demo_tables(END, seed=8, scale=0.5)
    assert not other["reps"]["rep_name"].head(18).equals(tables["reps"]["rep_name"].head(18))


def test_end_defaults_to_the_last_complete_month():
    tables = generate_demo_tables(scale=0.1)
    last = tables["revenue"]["recognized_at"].max()
    assert last == last_complete_month().start


# --- contract: columns, types, keys, references ----------------------------------------------


@pytest.mark.parametrize("name", list(TABLES))
def test_every_canonical_column_is_present_with_its_type(tables, name):
    frame, spec = tables[name], TABLES[name]
    assert list(frame.columns) == list(spec.columns)
    wrong = {
        c: str(frame[c].dtype) for c, kind in spec.columns.items() if not _is_kind(frame[c], kind)
    }
    assert wrong == {}
    assert len(frame) > 0


@pytest.mark.parametrize("name", [n for n, spec in TABLES.items() if spec.key])
def test_keys_are_unique_and_never_null(tables, name):
    key = tables[name][TABLES[name].key]
    assert key.notna().all()
    assert key.is_unique


@pytest.mark.parametrize(
    ("table", "column", "target", "key"),
    [
        ("reps", "team_id", "teams", "team_id"),
        ("leads", "owner_rep_id", "reps", "rep_id"),
        ("leads", "opportunity_id", "opportunities", "opportunity_id"),
        ("activities", "rep_id", "reps", "rep_id"),
        ("activities", "lead_id", "leads", "lead_id"),
        ("activities", "opportunity_id", "opportunities", "opportunity_id"),
        ("opportunities", "owner_rep_id", "reps", "rep_id"),
        ("opportunities", "account_id", "accounts", "account_id"),
        ("opportunities", "lead_id", "leads", "lead_id"),
        ("stage_history", "opportunity_id", "opportunities", "opportunity_id"),
        ("accounts", "owner_rep_id", "reps", "rep_id"),
        ("revenue", "account_id", "accounts", "account_id"),
        ("spend", "team_id", "teams", "team_id"),
    ],
)
def test_every_reference_resolves(tables, table, column, target, key):
    values = tables[table][column].dropna()
    assert len(values) > 0
    assert values.isin(tables[target][key]).all()


def test_every_opportunity_has_an_account_and_converted_leads_point_back(tables):
    opps, leads = tables["opportunities"], tables["leads"]
    assert opps["account_id"].notna().all()
    linked = leads.dropna(subset=["opportunity_id"]).merge(
        opps, on="opportunity_id", suffixes=("", "_opp")
    )
    assert (linked["lead_id"] == linked["lead_id_opp"]).all()
    assert (linked["converted_at"] == linked["created_at_opp"]).all()
    assert leads["converted_at"].notna().sum() == leads["opportunity_id"].notna().sum()


# --- time: 36 months, nothing after the end --------------------------------------------------


def test_history_covers_the_36_months_up_to_the_end_month(tables):
    for table, column in [
        ("activities", "occurred_at"),
        ("revenue", "recognized_at"),
        ("spend", "spent_at"),
        ("leads", "created_at"),
    ]:
        months = tables[table][column].dt.to_period("M")
        recent = months[months >= FIRST_MONTH.to_period("M")]
        assert recent.nunique() == 36, table
        assert months.max() == pd.Period(END, "M"), table
    assert tables["activities"]["occurred_at"].min() >= FIRST_MONTH


def test_nothing_happens_after_the_end_month(tables):
    # expected_close_at is a plan, not an event: it may lie after the end month.
    late = {
        f"{name}.{column}": int((frame[column] >= HORIZON).sum())
        for name, frame in tables.items()
        for column in frame.columns
        if column.endswith("_at") and column != "expected_close_at"
    }
    assert set(late.values()) == {0}, late


def test_open_deals_and_only_they_expect_a_close_after_creation(tables):
    opps = tables["opportunities"]
    open_ = opps[~opps["is_closed"]]
    assert (open_["expected_close_at"] > open_["created_at"]).all()
    assert opps.loc[opps["is_closed"], "expected_close_at"].isna().all()


def test_closed_deals_close_after_creation_and_open_deals_have_no_close(tables):
    opps = tables["opportunities"]
    closed, open_ = opps[opps["is_closed"]], opps[~opps["is_closed"]]
    assert (closed["closed_at"] >= closed["created_at"]).all()
    assert closed["closed_at"].notna().all()
    assert open_["closed_at"].isna().all()
    assert not (open_["is_won"]).any()
    assert set(closed["stage"]) == {"Closed Won", "Closed Lost"}
    assert (closed["is_won"] == (closed["stage"] == "Closed Won")).all()
    assert len(open_) > 50  # deals in flight at the end


def test_stage_history_enters_stages_in_order_and_ends_in_the_current_stage(tables):
    order = {
        s: i
        for i, s in enumerate(
            ["Prospecting", "Discovery", "Demo", "Proposal", "Negotiation", "Closed Won"]
        )
    }
    order["Closed Lost"] = 5
    history = tables["stage_history"].assign(step=lambda d: d["stage"].map(order))
    by_opp = history.groupby("opportunity_id", sort=False)
    assert by_opp["entered_at"].is_monotonic_increasing.all()
    # no two entries of a deal at one instant: stages passed within the instant were skipped
    assert (by_opp["entered_at"].diff().dropna() > pd.Timedelta(0)).all()
    assert (by_opp["step"].diff().dropna() >= 1).all()  # forward only; closing comes last
    first = by_opp.first()
    last = by_opp.last()
    opps = tables["opportunities"].set_index("opportunity_id")
    assert (first["stage"] == "Prospecting").all()
    assert (first["entered_at"] == opps.loc[first.index, "created_at"]).all()
    assert (last["stage"] == opps.loc[last.index, "stage"]).all()
    closed = opps[opps["is_closed"]]
    assert (last.loc[closed.index, "entered_at"] == closed["closed_at"]).all()
    lost = history[
        history["opportunity_id"].isin(
            history.loc[history["stage"] == "Closed Lost", "opportunity_id"]
        )
    ]
    dropped_out_after = lost[lost["step"] < 5].groupby("opportunity_id")["stage"].last()
    assert dropped_out_after.nunique() == 5  # lost deals drop out at every stage


def test_activities_happen_on_weekdays_in_business_hours(tables):
    at = tables["activities"]["occurred_at"]
    assert (at.dt.day_of_week < 5).all()
    assert at.dt.hour.between(8, 17).all()


def test_reps_act_only_while_employed(tables):
    acts = tables["activities"].merge(tables["reps"], on="rep_id")
    assert (acts["occurred_at"] >= acts["start_at"]).all()
    left = acts.dropna(subset=["end_at"])
    assert (left["occurred_at"] < left["end_at"] + pd.Timedelta(days=1)).all()


# --- shape of the org ------------------------------------------------------------------------


def test_six_teams_in_three_regions_with_readable_ids(tables):
    teams = tables["teams"]
    assert teams["team_id"].tolist() == [
        "na-ent",
        "na-mm",
        "emea-ent",
        "emea-mm",
        "apac-ent",
        "apac-mm",
    ]
    assert sorted(teams["region"].unique()) == ["APAC", "EMEA", "North America"]
    assert teams.loc[0, "team_name"] == "North America Enterprise"


def test_36_reps_with_hires_leavers_and_non_quota_carriers(tables):
    reps = tables["reps"]
    assert len(reps) == 36
    assert reps.groupby("team_id").size().eq(6).all()
    assert reps["rep_id"].iloc[0] == "R001"
    assert reps["rep_name"].is_unique and reps["email"].is_unique
    hired = reps["start_at"] >= FIRST_MONTH
    assert 5 <= hired.sum() <= 12
    assert 1 <= reps["end_at"].notna().sum() <= 4
    assert 1 <= (~reps["is_quota_carrying"]).sum() <= 2
    non_quota = reps.loc[~reps["is_quota_carrying"], "rep_id"]
    assert not tables["opportunities"]["owner_rep_id"].isin(non_quota).any()


def test_volumes_and_rates_look_like_a_b2b_saas_sales_org(tables):
    acts, leads, opps = tables["activities"], tables["leads"], tables["opportunities"]
    per_rep_month = acts.groupby(["rep_id", acts["occurred_at"].dt.to_period("M")]).size()
    assert 95 <= per_rep_month.median() <= 140
    assert set(acts["activity_type"]) == {"call", "email", "meeting", "demo", "other"}
    assert acts["opportunity_id"].notna().mean() > 0.2
    assert acts["lead_id"].notna().mean() > 0.2
    assert set(leads["source"]) == {"inbound", "outbound", "referral", "event", "partner"}
    assert 0.35 <= leads["qualified_at"].notna().mean() <= 0.45
    closed = opps[opps["is_closed"]]
    assert 0.2 <= closed["is_won"].mean() <= 0.3
    win_by_rep = closed.groupby("owner_rep_id")["is_won"].mean()
    assert win_by_rep.quantile(0.9) - win_by_rep.quantile(0.1) > 0.1  # a spread to rank
    assert (opps["currency"] == "USD").all()


def test_enterprise_deals_are_larger_and_slower_than_mid_market(tables):
    won = (
        tables["opportunities"]
        .query("is_won and lead_id.notna()")
        .merge(tables["accounts"][["account_id", "segment"]], on="account_id")
    )
    won["cycle_days"] = (won["closed_at"] - won["created_at"]).dt.total_seconds() / 86_400
    median = won.groupby("segment")[["amount", "cycle_days"]].median()
    assert median.loc["Enterprise", "amount"] > 3 * median.loc["Mid-Market", "amount"]
    assert median.loc["Enterprise", "cycle_days"] > median.loc["Mid-Market", "cycle_days"]
    assert won["cycle_days"].between(19, 122).all()


def test_amounts_are_positive_and_missing_only_on_open_early_stage_deals(tables):
    opps = tables["opportunities"]
    missing = opps[opps["amount"].isna()]
    assert 0 < len(missing) < 0.02 * len(opps)
    assert not missing["is_closed"].any()
    assert set(missing["stage"]) <= {"Prospecting", "Discovery"}
    assert (opps["amount"].dropna() > 0).all()
    assert (tables["revenue"]["amount"] > 0).all()
    assert (tables["spend"]["amount"] > 0).all()


def test_stale_open_deals_exist(tables):
    opps = tables["opportunities"]
    stale = opps[~opps["is_closed"] & (opps["created_at"] < HORIZON - pd.DateOffset(months=6))]
    assert 10 <= len(stale) <= 0.05 * len(opps)


def test_bookings_grow_and_peak_in_q4_with_a_summer_dip(tables):
    won = tables["opportunities"].query("is_won")
    month = won["closed_at"].dt.to_period("M")
    bookings = won.groupby(month)["amount"].sum()
    assert bookings.iloc[-12:].sum() > 1.15 * bookings.iloc[-24:-12].sum()
    wins = won.groupby(month.dt.month).size()
    assert wins[[11, 12]].sum() > 1.3 * wins[[7, 8]].sum()
    quarter_ends = wins[[3, 6, 9, 12]].mean()
    assert quarter_ends > 1.2 * wins[[1, 4, 7, 10]].mean()


def test_revenue_starts_the_month_after_a_new_business_win(tables):
    won = tables["opportunities"].query("is_won and lead_id.notna()")
    first = tables["revenue"].groupby("account_id")["recognized_at"].min()
    won = won[won["closed_at"] < HORIZON - pd.DateOffset(months=1)]
    expected = won["closed_at"].dt.to_period("M").dt.to_timestamp() + pd.DateOffset(months=1)
    assert (first.loc[won["account_id"]].to_numpy() == expected.to_numpy()).all()
    assert (tables["revenue"]["recognized_at"].dt.day == 1).all()


def test_monthly_logo_churn_is_one_to_two_percent(tables):
    revenue = tables["revenue"]
    months = sorted(revenue["recognized_at"].unique())
    by_month = revenue.groupby("recognized_at")["account_id"].apply(set)
    churn = [
        1 - len(by_month[b] & by_month[a]) / len(by_month[a])
        for a, b in zip(months[:-1], months[1:], strict=True)
    ]
    assert 0.01 <= np.mean(churn) <= 0.02


def test_spend_has_team_sales_and_marketing_plus_company_brand_each_month(tables):
    spend = tables["spend"]
    per_month = spend.groupby("spent_at").agg(
        rows=("amount", "size"), brand=("team_id", lambda s: s.isna().sum())
    )
    assert (per_month["rows"] == 13).all()  # 6 teams x 2 categories + brand
    assert (per_month["brand"] == 1).all()
    assert set(spend["category"]) == {"sales", "marketing"}
    yearly = spend.groupby(spend["spent_at"].dt.to_period("Y"))["amount"].sum()
    assert yearly.loc[pd.Period("2026")] / 10 > yearly.loc[pd.Period("2024")] / 12


def test_scale_multiplies_reps_and_volumes_not_teams_or_months(tables):
    doubled = generate_demo_tables(END, seed=7, scale=2)
    assert len(doubled["teams"]) == 6
    assert len(doubled["reps"]) == 72
    ratio = len(doubled["activities"]) / len(tables["activities"])
    assert 1.8 <= ratio <= 2.2
    assert doubled["spend"]["spent_at"].nunique() == 36


@pytest.mark.parametrize("bad", [0, -1, "many", float("nan")])
def test_scale_must_be_a_positive_number(bad):
    with pytest.raises(ParamsError, match="scale"):
        generate_demo_tables(END, scale=bad)


def test_end_must_be_a_period():
    with pytest.raises(PeriodError):
        generate_demo_tables("2026-13")


# --- writing ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small() -> dict[str, pd.DataFrame]:
    return generate_demo_tables(END, seed=3, scale=0.5)


def test_duckdb_file_has_one_native_table_per_canonical_table(tmp_path, small):
    out = write_demo_data(tmp_path / "demo.duckdb", end=END, seed=3, scale=0.5)
    assert out == tmp_path / "demo.duckdb"
    with duckdb.connect(str(out), read_only=True) as con:
        names = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        assert names == set(TABLES)
        for name, frame in small.items():
            assert con.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] == len(frame)
        types = dict(
            con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'opportunities'"
            ).fetchall()
        )
        back = con.execute("SELECT * FROM reps ORDER BY rep_id").df()
    assert types["created_at"] == "TIMESTAMP"
    assert types["is_won"] == "BOOLEAN"
    assert types["amount"] == "DOUBLE"
    assert types["stage"] == "VARCHAR"
    assert back["rep_id"].tolist() == small["reps"]["rep_id"].tolist()
    assert [p.name for p in tmp_path.iterdir()] == ["demo.duckdb"]  # no temp files left


def test_writing_again_replaces_the_duckdb_file_whole(tmp_path):
    out = tmp_path / "demo.duckdb"
    write_demo_data(out, end=END, seed=3, scale=0.2)
    write_demo_data(out, end=END, seed=3, scale=0.1)
    with duckdb.connect(str(out), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM reps").fetchone()[0] == 6


def test_csv_folder_reads_back_with_the_same_rows(tmp_path, small):
    out = write_demo_data(tmp_path / "demo", end=END, seed=3, scale=0.5)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.csv" for n in TABLES)
    for name, frame in small.items():
        back = pd.read_csv(out / f"{name}.csv")
        assert list(back.columns) == list(frame.columns)
        assert len(back) == len(frame), name
    opps = pd.read_csv(out / "opportunities.csv", parse_dates=["created_at", "closed_at"])
    assert (opps["created_at"] == small["opportunities"]["created_at"]).all()


def test_parquet_folder_keeps_the_types(tmp_path, small):
    out = write_demo_data(tmp_path / "pq", end=END, seed=3, scale=0.5, fmt="parquet")
    for name, frame in small.items():
        back = pd.read_parquet(out / f"{name}.parquet")
        assert len(back) == len(frame), name
        assert all(_is_kind(back[c], kind) for c, kind in TABLES[name].columns.items()), name


@pytest.mark.parametrize(("out", "fmt"), [("demo.xlsx", None), ("demo", "excel")])
def test_unknown_output_format_is_refused(tmp_path, out, fmt):
    with pytest.raises(ParamsError, match="format|suffix|cannot tell"):
        write_demo_data(tmp_path / out, end=END, scale=0.1, fmt=fmt)
    assert list(tmp_path.iterdir()) == []
