"""``python -m kpi_lib init``: a starting configuration that belongs to the org in front of it.

The org: teams "Ventes Montréal" and "Direct Sales"; reps "Cara Losch" (an email), "José Núñez"
(none) and "Zoë O'Brien" (an email that is not an address), all in Montréal but Zoë. Its data
starts in October 2026: Cara won 1000 (closed 2026-10-15), José won 3000 (2026-11-10). Open
today (2026-12-06): Zoë's deal in "Engaging" (1440) and Cara's in "Qualifying" (500); stage
history puts Qualifying before Engaging. No stage has a probability in the export.
"""

from __future__ import annotations

import io

import pandas as pd
import pytest
import yaml

from kpi_lib.cli import main
from kpi_lib.data.load import load_source
from kpi_lib.metrics.cube import load_settings
from kpi_lib.metrics.targets import load_targets
from kpi_lib.publish.recipients import load_recipients

TODAY = "2026-12-06"
TEAMS = pd.DataFrame(
    {"team_id": ["Ventes Montréal", "Direct Sales"], "team_name": ["Montréal", "Direct"]}
)
REPS = pd.DataFrame(
    {
        "rep_id": ["Cara Losch", "José Núñez", "Zoë O'Brien"],
        "rep_name": ["Cara Losch", "José Núñez", "Zoë O'Brien"],
        "team_id": ["Ventes Montréal", "Ventes Montréal", "Direct Sales"],
        "email": ["cara@acme.example", None, "zoe at acme"],
    }
)
OPPS = pd.DataFrame(
    {
        "opportunity_id": ["W1", "W2", "O1", "O2"],
        "owner_rep_id": ["Cara Losch", "José Núñez", "Zoë O'Brien", "Cara Losch"],
        "created_at": ["2026-10-01", "2026-10-20", "2026-11-01", "2026-11-05"],
        "stage": ["Won", "Won", "Engaging", "Qualifying"],
        "is_closed": [True, True, False, False],
        "is_won": [True, True, False, False],
        "closed_at": ["2026-10-15", "2026-11-10", None, None],
        "amount": [1000.0, 3000.0, 1440.0, 500.0],
    }
)
HISTORY = pd.DataFrame(
    {
        "opportunity_id": ["W1", "W1", "W1", "W2", "W2", "O1", "O1", "O2"],
        "stage": [
            "Qualifying",
            "Engaging",
            "Won",
            "Qualifying",
            "Won",
            "Qualifying",
            "Engaging",
            "Qualifying",
        ],
        "entered_at": [
            "2026-10-01",
            "2026-10-05",
            "2026-10-15",
            "2026-10-20",
            "2026-11-10",
            "2026-11-01",
            "2026-11-10",
            "2026-11-05",
        ],
    }
)


@pytest.fixture
def org(tmp_path):
    folder = tmp_path / "exports" / "acme"
    folder.mkdir(parents=True)
    tables = {"teams": TEAMS, "reps": REPS, "opportunities": OPPS, "stage_history": HISTORY}
    for name, df in tables.items():
        df.to_csv(folder / f"{name}.csv", index=False)
    return folder


def run_init(org, out, *extra) -> int:
    return main(["init", "--source", str(org), "--out", str(out), "--today", TODAY, *extra])


def test_init_writes_a_configuration_of_the_orgs_own_that_the_kit_reads(org, tmp_path, capsys):
    out = tmp_path / "params" / "acme"
    assert run_init(org, out) == 0
    assert "render with: make reports SOURCE=" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [
        "kpis.yaml",
        "recipients.yaml",
        "source.yaml",
        "targets.yaml",
    ]
    spec = yaml.safe_load((out / "source.yaml").read_text())
    assert spec == {
        "path": str(org),
        "targets": "targets.yaml",
        "kpis": "kpis.yaml",
        "recipients": "recipients.yaml",
    }
    assert load_source(out / "source.yaml").fingerprint == load_source(org).fingerprint


def test_the_targets_file_lists_every_scope_with_values_left_empty_and_actuals_beside(
    org, tmp_path
):
    out = tmp_path / "acme"
    run_init(org, out)
    text = (out / "targets.yaml").read_text()
    assert load_targets(out / "targets.yaml").entries["revenue"] == {
        "defaults": {},
        "overrides": [],
    }  # nothing set: every tile says "no target set" until the user writes a value
    # months with data only (2026-10 and 2026-11): revenue 1000 and 3000, mean 2000
    assert "company:    # mean $2K a month (low $1K in 2026-10, high $3K in 2026-11)" in text
    assert "complete months 2026-10 to 2026-11 (the data's)" in text
    assert '# - {scope: team, scope_id: "Ventes Montréal", value: }  # Montréal: mean $2K' in text
    assert "# - {scope: rep, scope_id: \"Zoë O'Brien\", value: }  # Zoë O'Brien: mean $0" in text
    assert "win_rate:" in text and "qualified_leads:" not in text  # no leads table: no target


def test_the_stages_come_in_pipeline_order_marked_to_review_with_the_amount_they_hold(
    org, tmp_path
):
    out = tmp_path / "acme"
    run_init(org, out)
    lines = (out / "kpis.yaml").read_text().splitlines()
    stages = [line.strip() for line in lines if line.startswith('  "')]
    assert stages == [
        '"Qualifying":   # to review: no probability in the export; 1 open deal, $500 today',
        '"Engaging":   # to review: no probability in the export; 1 open deal, $1.44K today',
    ]
    assert load_settings(out / "kpis.yaml") == {
        "gross_margin": 1.0,
        "stage_probabilities": {},
        "risks": {"quiet_days": 30, "stage_percentile": 0.9, "close_date_pushes": 2},
    }


def test_recipients_are_the_reps_with_an_address_and_templates_for_the_others(org, tmp_path):
    out = tmp_path / "acme"
    run_init(org, out)
    people = load_recipients(out / "recipients.yaml")
    assert [(p.email, p.role, p.rep_id) for p in people] == [
        ("cara@acme.example", "rep", "Cara Losch")
    ]
    text = (out / "recipients.yaml").read_text()
    assert 'role: manager, team_id: "Ventes Montréal"}' in text
    assert '# rep "José Núñez" (José Núñez): no email' in text
    assert '"zoe at acme" is not an address' in text


def test_init_never_overwrites_a_configuration_without_force(org, tmp_path, capsys):
    out = tmp_path / "acme"
    assert run_init(org, out) == 0
    (out / "targets.yaml").write_text("revenue: {company: 5000}\n")
    assert run_init(org, out) == 2
    assert "already holds" in capsys.readouterr().err
    assert (out / "targets.yaml").read_text() == "revenue: {company: 5000}\n"
    assert run_init(org, out, "--force") == 0
    assert load_targets(out / "targets.yaml").entries["revenue"]["defaults"] == {}


def test_init_refuses_to_write_over_the_demo_orgs_params(org, capsys):
    from kpi_lib.paths import PROJECT_ROOT

    assert run_init(org, PROJECT_ROOT / "params") == 2
    assert "demo org" in capsys.readouterr().err


def kpis(source: str, capsys) -> pd.DataFrame:
    args = ["kpis", "--source", source, "--period", "2026-11", "--as-of", TODAY]
    assert main(args) == 0
    return pd.read_csv(io.StringIO(capsys.readouterr().out), dtype={"scope_id": str})


def test_the_orgs_configuration_applies_to_its_data_and_the_demos_never_does(org, tmp_path, capsys):
    out = tmp_path / "acme"
    run_init(org, out)
    capsys.readouterr()
    bare = kpis(str(org), capsys)  # the folder alone: no configuration of its own yet
    assert bare["target"].isna().all()  # params/targets.yaml is the demo org's, not this one's
    assert bare.query("kpi == 'weighted_pipeline' and scope == 'company'")["value"].isna().all()

    (out / "targets.yaml").write_text(
        "revenue:\n  company: 5000\n  overrides:\n"
        '    - {scope: team, scope_id: "Ventes Montréal", value: 4000}\n'
    )
    (out / "kpis.yaml").write_text("stage_probabilities: {Qualifying: 0.1, Engaging: 0.5}\n")
    own = kpis(str(out / "source.yaml"), capsys).set_index(["kpi", "scope", "scope_id"])
    assert own.loc[("revenue", "company", "all"), "target"] == 5000
    assert own.loc[("revenue", "team", "Ventes Montréal"), "target"] == 4000
    assert pd.isna(own.loc[("revenue", "team", "Direct Sales"), "target"])
    # open at the end of November: Engaging 1440 x 0.5 + Qualifying 500 x 0.1
    assert own.loc[("weighted_pipeline", "company", "all"), "value"] == pytest.approx(770)


def test_a_salesforce_export_gives_its_stages_the_crms_probabilities(tmp_path):
    from pathlib import Path

    fixtures = Path(__file__).parent / "fixtures" / "salesforce"
    out = tmp_path / "sf"
    args = ["init", "--source", str(fixtures), "--preset", "salesforce", "--out", str(out)]
    assert main([*args, "--today", "2026-11-05"]) == 0
    settings = load_settings(out / "kpis.yaml")
    # Opportunity.csv: the open deals' Probability (0-100), median per stage, scaled to 0-1
    assert settings["stage_probabilities"] == {
        "Negotiation/Review": 0.8,
        "Proposal/Price Quote": 0.6,
    }
    assert yaml.safe_load((out / "source.yaml").read_text())["preset"] == "salesforce"
