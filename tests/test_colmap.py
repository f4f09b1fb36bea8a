"""Column maps: a layout this project has not seen, mapped with YAML, gives hand-computed KPIs."""

from __future__ import annotations

from pathlib import Path

import pytest

import kpi_lib
from kpi_lib.errors import ParamsError

FIXTURE = Path(__file__).parent / "fixtures" / "colmap_pipeline"
AS_OF = "2026-11-28"


@pytest.fixture(scope="module")
def pipeline():
    return kpi_lib.load_source(FIXTURE, colmap=FIXTURE / "colmap.yaml", as_of=AS_OF)


def company(src) -> dict:
    cube = kpi_lib.compute_cube(src, "2026-10", as_of=AS_OF, targets={})
    return cube.query("scope == 'company'").set_index("kpi")["value"].to_dict()


def test_mapped_pipeline_gives_hand_computed_october_kpis(pipeline):
    # Won in October: 1054 + 4514 + 50 + 517; lost: MV1LWRNH. Three agents, always active.
    got = company(pipeline)
    assert got["revenue"] == 6135
    assert got["win_rate"] == pytest.approx(4 / 5)
    assert got["avg_deal_size"] == pytest.approx(6135 / 4)
    assert got["revenue_per_rep"] == pytest.approx(6135 / 3)
    assert got["new_customers"] == 3  # Cancity, Isdom, Hottechi
    assert got["opportunities_created"] == 4  # engaged in October


def test_teams_are_the_distinct_offices(pipeline):
    assert sorted(pipeline.frame("teams")["team_id"]) == ["Central", "West"]


def test_open_deals_have_no_close_and_skipped_rows_are_accounted(pipeline):
    opps = pipeline.frame("opportunities").set_index("opportunity_id")
    assert not opps.loc["ZNBS69V1", "is_closed"]
    acc = pipeline.row_accounting()
    skipped = acc[acc["status"] == "not a row"].iloc[0]
    assert skipped["table"] == "sales_pipeline.csv" and skipped["rows"] == 1


def test_a_colmap_yaml_given_as_source_reads_its_own_folder():
    assert company(kpi_lib.load_source(str(FIXTURE / "colmap.yaml")))["revenue"] == 6135


def test_value_maps_translate_and_unmapped_values_are_named(tmp_path):
    spec = {
        "tables": {
            "teams": {
                "file": "sales_teams.csv",
                "columns": {"team_id": "regional_office", "team_name": "regional_office"},
                "distinct": True,
            },
            "reps": {
                "file": "sales_teams.csv",
                "columns": {
                    "rep_id": "sales_agent",
                    "rep_name": "sales_agent",
                    "team_id": "regional_office",
                },
            },
            "opportunities": {
                "file": "sales_pipeline.csv",
                "skip_empty": ["created_at"],
                "columns": {
                    "opportunity_id": "opportunity_id",
                    "owner_rep_id": "sales_agent",
                    "created_at": "engage_date",
                    "closed_at": "close_date",
                    "stage": "deal_stage",
                    "amount": "close_value",
                },
                "values": {
                    "is_won": {"from": "deal_stage", "map": {"Won": True}, "default": False},
                    "is_closed": {"from": "deal_stage", "map": {"Won": True, "Lost": True}},
                },
            },
        }
    }
    with pytest.raises(kpi_lib.KpiKitError, match="Engaging"):
        kpi_lib.load_source(FIXTURE, colmap=spec)
    spec["tables"]["opportunities"]["values"]["is_closed"]["default"] = False
    got = company(kpi_lib.load_source(FIXTURE, colmap=spec))
    assert got["win_rate"] == pytest.approx(4 / 5)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"tables": {"deals": {"file": "x.csv"}}}, "unknown table 'deals'"),
        ({"tables": {"teams": {"columns": {}}}}, "exactly one of 'file' or 'table'"),
        ({"tables": {"teams": {"file": "x.csv", "columns": {"colour": "c"}}}}, "'colour'"),
        ({"tables": {"teams": {"file": "x.csv", "rename": {}}}}, "unknown key"),
        ({}, "tables:"),
    ],
)
def test_a_wrong_column_map_is_a_params_error_naming_the_problem(spec, words):
    with pytest.raises(ParamsError, match=words):
        kpi_lib.load_source(FIXTURE, colmap=spec)
