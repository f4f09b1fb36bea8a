"""params/recipients.yaml: who may see which reports, checked against the batch's teams and reps.

Executives may see everything; a manager their team and its reps; a rep their own report.
Anything else is a ParamsError naming the file and the entry (exit code 2 from the CLI).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from _delivery import ROOT, build_batch, write_recipients

from kpi_lib import cli
from kpi_lib.errors import ParamsError
from kpi_lib.metrics.batch import Batch
from kpi_lib.publish.recipients import load_recipients


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> Batch:
    period_dir = build_batch(tmp_path_factory.mktemp("batch"))
    return Batch.load(period_dir / "_data")


def people(path: Path, *entries: dict) -> Path:
    return write_recipients(path, {"recipients": list(entries)})


EXEC = {"email": "ceo@example.com", "name": "Dana", "role": "executive"}


def test_the_shipped_demo_recipients_are_valid_for_the_demo_data(batch):
    rl = load_recipients(ROOT / "params" / "recipients.yaml", batch)
    roles = [r.role for r in rl]
    assert roles.count("executive") == 2
    assert {r.team_id for r in rl if r.role == "manager"} == set(batch.teams["team_id"])
    assert roles.count("rep") >= 2
    assert all(r.email.endswith("@example.com") for r in rl)


def test_each_role_defaults_to_the_report_of_its_own_scope(tmp_path, batch):
    path = people(
        tmp_path / "r.yaml",
        EXEC,
        {"email": "m@example.com", "name": "M", "role": "manager", "team_id": "na-mm"},
        {"email": "r@example.com", "name": "R", "role": "rep", "rep_id": "R007"},
    )
    assert [r.scopes for r in load_recipients(path, batch)] == [("all",), ("na-mm",), ("R007",)]


def test_a_manager_may_add_reps_of_their_own_team_and_an_executive_anything(tmp_path, batch):
    path = people(
        tmp_path / "r.yaml",
        {**EXEC, "scopes": ["all", "apac-mm", "R030"]},
        {
            "email": "m@example.com",
            "name": "M",
            "role": "manager",
            "team_id": "na-ent",
            "scopes": ["na-ent", "R001", "R002"],
        },
    )
    rl = load_recipients(path, batch)
    assert rl.recipients[1].scopes == ("na-ent", "R001", "R002")


MANAGER = {"email": "m@example.com", "name": "M", "role": "manager", "team_id": "na-ent"}
REP = {"email": "r@example.com", "name": "R", "role": "rep", "rep_id": "R001"}


@pytest.mark.parametrize(
    "entries, message",
    [
        ([{**EXEC, "scopes": ["all", "mars"]}], "unknown scopes ['mars']"),
        (
            [EXEC, {**REP, "email": "CEO@example.com"}],
            "duplicate address, already listed as recipient 1",
        ),
        (
            [{**REP, "scopes": ["R001", "R002"]}],
            "may only see their own report ('R001'), not ['R002']",
        ),
        ([{**REP, "scopes": ["na-ent"]}], "not ['na-ent']"),
        ([{**REP, "scopes": ["all"]}], "not ['all']"),
        ([{**MANAGER, "scopes": ["na-ent", "emea-mm"]}], "may not see scope 'emea-mm'"),
        ([{**MANAGER, "scopes": ["na-ent", "R013"]}], "rep 'R013' belongs to team 'emea-ent'"),
        ([{**MANAGER, "scopes": ["all"]}], "may not see scope 'all'"),
        ([{**MANAGER, "team_id": "atlantis"}], "team_id 'atlantis' is not a team"),
        ([{**REP, "rep_id": "R999"}], "rep_id 'R999' is not a rep"),
        ([{**REP, "scopes": ["R001", "R999"]}], "unknown scopes ['R999']"),
        ([{**MANAGER, "team_id": None}], "a manager needs 'team_id:'"),
        ([{**REP, "rep_id": None}], "a rep needs 'rep_id:'"),
        ([{**EXEC, "email": "not-an-address"}], "'not-an-address' is not an email address"),
        ([{**EXEC, "email": "a@b.com\nBcc: x@evil.com"}], "is not an email address"),
        ([{**EXEC, "name": "Dana\r\nBcc: x@evil.com"}], "the name must be one line"),
        ([{**EXEC, "role": "ceo"}], "role 'ceo' is not one of"),
        ([{**EXEC, "scopes": "all"}], "scopes must be a non-empty list"),
        ([{**EXEC, "team": "na-ent"}], "unknown keys ['team']"),
    ],
)
def test_a_bad_entry_is_an_error_naming_the_file_and_the_entry(tmp_path, batch, entries, message):
    path = people(tmp_path / "recipients.yaml", *entries)
    with pytest.raises(ParamsError) as err:
        load_recipients(path, batch)
    text = str(err.value)
    assert message in text
    assert str(path) in text and f"recipient {len(entries)}" in text


def test_a_file_without_a_recipients_list_is_an_error(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"people": []}))
    with pytest.raises(ParamsError, match="expected a mapping with a 'recipients:' list"):
        load_recipients(path)


def test_send_exits_2_with_one_line_when_the_recipients_file_is_wrong(tmp_path, batch, capsys):
    period_dir = tmp_path / "2026-10"
    batch.save(period_dir / "_data")
    path = people(tmp_path / "recipients.yaml", {**REP, "scopes": ["R001", "R002"]})
    code = cli.main(
        ["send", "--period", "2026-10", "--out", str(tmp_path), "--recipients", str(path)]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"error: {path}: recipient 1 (r@example.com): a rep may only see")
    assert "Traceback" not in err
