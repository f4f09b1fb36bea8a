"""Scope isolation: no report or digest names a rep, team or account outside its audience's scope.

The rule (``kpi_lib.publish.audit``, docs/security.md) is specified on a hand-made directory first:
whole-name matches, own names masking foreign substrings, common words and homonyms left out.
Then real batches: the demo rendered with the real notebooks and mailed as .eml files has no
finding; a leak planted in a report or a digest is found; a notebook that leaks fails its report
(exit 1, the leak listed) and a digest that would leak is not delivered.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from email import message_from_bytes, policy
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml
from nbformat.v4 import new_code_cell, new_notebook

import kpi_lib
from kpi_lib.periods import Period
from kpi_lib.publish.audit import Auditor, Directory, html_text, scan_batch

ROOT = Path(__file__).resolve().parent.parent
PERIOD = "2026-10"
AS_OF = "2026-11-05"
LEAKS_FOUND: list[str] = []


def directory() -> Directory:
    """Two teams: east (Ann, Ana Lee), west (Anna, Lee Chang, and a second Ana Lee)."""
    d = Directory(
        teams={"east": "East Coast", "west": "West Coast"},
        reps={"r1": "Ann", "r2": "Ana Lee", "r3": "Anna", "r4": "Lee Chang", "r5": "Ana Lee"},
        team_of={"r1": "east", "r2": "east", "r3": "west", "r4": "west", "r5": "west"},
    )
    d.add_accounts(
        pd.DataFrame(
            {
                "account_id": ["A1", "A2", "A3"],
                "account_name": ["Acme <b>Corp</b>", "Globex", "Revenue"],
                "owner_rep_id": ["r1", "r3", "r3"],
            }
        ),
        pd.DataFrame({"account_id": ["A2"], "owner_rep_id": ["r2"]}),
    )  # r2 works r3's Globex
    return d


def leaks(text: str, scope: str, scope_id: str) -> list[tuple[str, str]]:
    found = Auditor(directory()).scan_text(text, [(scope, scope_id)], path="t", audience="a")
    return [(f.kind, f.entity_id) for f in found]


@pytest.mark.parametrize(
    "text, scope, scope_id, expected",
    [
        ("Ann booked $5K for East Coast with Acme <b>Corp</b>", "rep", "r1", []),
        ("Ann and Anna", "rep", "r1", [("rep", "r3")]),
        ("Annabel, Annual, Hannah", "rep", "r1", []),  # no whole name
        ("Ann, R2D2 and Anna's deal", "rep", "r1", [("rep", "r3")]),
        ("Ana Lee Chang", "rep", "r2", [("rep", "r4")]),  # starts inside the own name
        ("Ana Lee and Lee Chang", "team", "east", [("rep", "r4")]),
        ("Globex renewal", "rep", "r2", []),  # r2 has a deal on r3's account
        ("Globex renewal", "rep", "r1", [("account", "A2")]),
        ("Revenue grew", "rep", "r1", []),  # a common word is not checked
        ("West Coast pipeline", "team", "east", [("team", "west")]),
        ("r3 and r4", "rep", "r1", []),  # short ids are not checked
        ("Everyone: Ann, Anna, Lee Chang", "company", "all", []),
    ],
)
def test_the_audit_finds_whole_foreign_names_only(text, scope, scope_id, expected):
    assert leaks(text, scope, scope_id) == expected


def test_an_id_without_a_letter_is_checked_only_when_it_is_a_long_number():
    """A team whose id is "0/0" is not found in a leaderboard's "(0/0)" (no deal closed); a
    rep whose id is a HubSpot owner number is found where it should not be."""
    d = Directory(
        teams={"0/0": "Zero Zero", "east": "East Coast"},
        reps={"81234567": "Bea Ruiz", "r1": "Ann Smith"},
        team_of={"81234567": "0/0", "r1": "east"},
    )
    auditor = Auditor(d)

    def found(text: str) -> list[tuple[str, str]]:
        hits = auditor.scan_text(text, [("team", "east")], path="t", audience="a")
        return [(f.kind, f.entity_id) for f in hits]

    assert found("Ann Smith: win rate n/a (0/0), 2026-10") == []
    assert found("deal owned by 81234567") == [("rep", "81234567")]


def test_ana_lee_of_another_team_is_indistinguishable_and_not_flagged():
    # r5 (west) is also called Ana Lee: the name cannot tell them apart, so it is not checked.
    assert leaks("Ana Lee", "rep", "r2") == []
    assert leaks("Ana Lee", "rep", "r1") == [("rep", "r2"), ("rep", "r5")]  # foreign to Ann


def test_the_provenance_footer_is_parameters_not_people():
    """A rep whose id is a word of the footer ("fingerprint", which the property test drew) and
    a source path that happens to hold a name are not names on the page."""
    page = (
        "<p>Ann booked $5K</p>"
        '<footer class="kr-footer">Parameters: <code>source=/srv/Anna/crm</code><br>'
        "Data fingerprint <code>abc</code></footer>"
    )
    assert html_text(page) == "Ann booked $5K"
    d = directory()
    d.reps["fingerprint"], d.team_of["fingerprint"] = "Zoë Quist", "west"
    found = Auditor(d).scan_text(html_text(page), [("rep", "r1")], path="p", audience="rep r1")
    assert found == []
    assert leaks("Ann and Anna", "rep", "r1") == [("rep", "r3")]  # the page itself still is


def test_names_are_read_as_a_reader_sees_them():
    page = (
        "<table><tr><td>Lee&nbsp;<b>Chang</b></td><td>12</td></tr></table>"
        '<img alt="Revenue of Anna" src="data:image/png;base64,AA=="><style>.Anna{}</style>'
    )
    assert html_text(page) == "Lee Chang 12 Revenue of Anna"
    assert (
        Auditor(directory())
        .scan_text(html_text(page), [("rep", "r1")], path="p", audience="rep r1")[0]
        .name
        == "Lee Chang"
    )
    assert leaks(html_text("Acme &lt;b&gt;Corp&lt;/b&gt;"), "rep", "r3") == [("account", "A1")]


# --------------------------------------------------------------------------------------------
# Real batches
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_source(tmp_path_factory) -> Path:
    from kpi_lib.data.demo import write_demo_data

    return write_demo_data(
        tmp_path_factory.mktemp("demo") / "demo.duckdb", end=PERIOD, seed=7, scale=0.3
    )


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, demo_source) -> dict:
    """Two teams rendered with the real notebooks (company, 2 teams, their 4 reps) and mailed
    as .eml files to an executive, both managers and every rep."""
    from kpi_lib.metrics.batch import prepare_batch
    from kpi_lib.publish.render import render_batch
    from kpi_lib.publish.send import send_batch

    work = tmp_path_factory.mktemp("isolation")
    batch = prepare_batch(str(demo_source), Period.parse(PERIOD), as_of=AS_OF)
    teams = list(batch.teams["team_id"][:2])
    reps = batch.reps[batch.reps["team_id"].isin(teams) & batch.reps["is_active"]]
    matrix = work / "reports.yaml"
    matrix.write_text(
        yaml.safe_dump(
            {
                "roles": {
                    "executive": {
                        "notebook": str(ROOT / "notebooks/executive.ipynb"),
                        "scope": "company",
                    },
                    "manager": {
                        "notebook": str(ROOT / "notebooks/manager.ipynb"),
                        "scope": "team",
                        "scope_ids": teams,
                    },
                    "rep": {
                        "notebook": str(ROOT / "notebooks/rep.ipynb"),
                        "scope": "rep",
                        "scope_ids": list(reps["rep_id"]),
                    },
                }
            }
        )
    )
    out = work / "reports"
    result = render_batch(
        Period.parse(PERIOD),
        source=str(demo_source),
        out=str(out),
        as_of=AS_OF,
        matrix=matrix,
        progress=False,
        jobs=2,
    )
    assert result.failed == [], result.summary()
    people = [{"email": "ceo@example.com", "name": "Dana Whitfield", "role": "executive"}]
    people += [
        {
            "email": f"lead-{t}@example.com",
            "name": f"Lead {t}",
            "role": "manager",
            "team_id": t,
            "scopes": [t, *reps[reps["team_id"] == t]["rep_id"]],
        }
        for t in teams
    ]
    people += [
        {"email": f"{r.lower()}@example.com", "name": f"Rep {r}", "role": "rep", "rep_id": r}
        for r in reps["rep_id"]
    ]
    recipients = work / "recipients.yaml"
    recipients.write_text(yaml.safe_dump({"recipients": people}))
    sent = send_batch(Period.parse(PERIOD), out=out, recipients=recipients, log=lambda _: None)
    assert sent.failed == [] and len(sent.sent) == len(people), sent.summary()
    return {
        "out": out,
        "recipients": recipients,
        "teams": teams,
        "reps": reps,
        "batch": batch,
        "source": demo_source,
    }


@pytest.mark.slow
def test_a_clean_batch_has_no_finding_in_any_report_or_digest(rendered):
    period_dir = rendered["out"] / PERIOD
    assert len(list(period_dir.glob("rep/*.html"))) == len(rendered["reps"]) == 4
    assert len(list((period_dir / "outbox").glob("*.eml"))) == 7
    assert (
        scan_batch(rendered["out"], Period.parse(PERIOD), recipients=rendered["recipients"]) == []
    )


def copy_of(rendered, tmp_path) -> Path:
    import shutil

    out = tmp_path / "reports"
    shutil.copytree(rendered["out"], out)
    return out


@pytest.mark.slow
def test_a_name_planted_in_a_rep_report_is_found(rendered, tmp_path):
    out = copy_of(rendered, tmp_path)
    reps = rendered["reps"]
    me, other = reps.iloc[0], reps[reps["team_id"] != reps.iloc[0]["team_id"]].iloc[0]
    page = out / PERIOD / "rep" / f"{me.rep_id}.html"
    page.write_text(
        page.read_text().replace("</main>", f"<p>Compare with {other.rep_name}</p></main>", 1)
    )
    found = scan_batch(out, Period.parse(PERIOD), recipients=rendered["recipients"])
    assert [(f.path, f.kind, f.entity_id) for f in found] == [(str(page), "rep", other.rep_id)]
    LEAKS_FOUND.append(str(found[0]))


@pytest.mark.slow
def test_another_teams_account_planted_in_a_digest_is_found(rendered, tmp_path):
    out = copy_of(rendered, tmp_path)
    teams = rendered["teams"]
    src = kpi_lib.load_source(str(rendered["source"]))
    accounts = src.frame("accounts").merge(
        src.frame("reps")[["rep_id", "team_id"]], left_on="owner_rep_id", right_on="rep_id"
    )
    deals = src.frame("opportunities").merge(
        src.frame("reps")[["rep_id", "team_id"]], left_on="owner_rep_id", right_on="rep_id"
    )
    worked = set(deals[deals["team_id"] == teams[0]]["account_id"])
    foreign = accounts[(accounts["team_id"] != teams[0]) & ~accounts["account_id"].isin(worked)]
    name = foreign.iloc[0]["account_name"]
    eml = out / PERIOD / "outbox" / f"lead-{teams[0]}@example.com.eml"
    msg = message_from_bytes(eml.read_bytes(), policy=policy.default)
    body = msg.get_body(("plain",))
    body.set_content(body.get_content() + f"\nBiggest deal: {name}\n")
    eml.write_bytes(msg.as_bytes())
    found = scan_batch(out, Period.parse(PERIOD), recipients=rendered["recipients"])
    assert [(f.path, f.kind, f.name) for f in found] == [(str(eml), "account", name)]
    LEAKS_FOUND.append(str(found[0]))


@pytest.mark.slow
def test_a_notebook_that_leaks_fails_its_report_and_the_cli_exits_1(rendered, tmp_path):
    """A rep notebook that prints every rep of the batch: that report fails, the others not."""
    reps = rendered["reps"]
    leaky = tmp_path / "notebooks" / "leaky.ipynb"
    leaky.parent.mkdir(parents=True)
    nbformat.write(
        new_notebook(
            cells=[
                new_code_cell(
                    'period = ""\nscope_id = ""\nsource = ""\nbatch_dir = ""\ntargets = ""',
                    metadata={"tags": ["parameters"]},
                ),
                new_code_cell(
                    "from IPython.display import HTML, display\nfrom kpi_lib.metrics.batch import Batch\n"
                    "b = Batch.load(batch_dir)\n"
                    f"names = list(b.reps.rep_name) if scope_id == {reps.iloc[0].rep_id!r} else "
                    "list(b.reps[b.reps.rep_id == scope_id].rep_name)\n"
                    "display(HTML('<p>' + ', '.join(names) + '</p>'))"
                ),
            ],
            metadata={
                "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
            },
        ),
        leaky,
    )
    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "reports.yaml").write_text(
        yaml.safe_dump(
            {
                "roles": {
                    "rep": {
                        "notebook": "notebooks/leaky.ipynb",
                        "scope": "rep",
                        "scope_ids": list(reps["rep_id"][:2]),
                    }
                }
            }
        )
    )
    out = tmp_path / "reports"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "kpi_lib",
            "render",
            "--period",
            PERIOD,
            "--source",
            str(rendered["source"]),
            "--out",
            str(out),
            "--as-of",
            AS_OF,
            "--jobs",
            "2",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ,
    )

    leaker = reps.iloc[0].rep_id
    assert run.returncode == 1, run.stderr
    assert f"FAILED rep/{leaker}: scope leak: names outside rep {leaker}: rep " in run.stderr
    assert not (out / PERIOD / "rep" / f"{leaker}.html").exists()
    assert (out / PERIOD / "rep" / f".{leaker}.leak.html").exists()  # kept aside, not linked
    assert (out / PERIOD / "rep" / f"{reps.iloc[1].rep_id}.html").exists()
    manifest = json.loads((out / PERIOD / "manifest.json").read_text())
    status = {r["scope_id"]: (r["status"], r["error"] or "") for r in manifest["reports"]}
    assert status[leaker][0] == "failed" and "scope leak" in status[leaker][1]
    assert status[reps.iloc[1].rep_id] == ("ok", "")
    LEAKS_FOUND.append(status[leaker][1])


@pytest.mark.slow
def test_a_digest_that_would_leak_is_not_delivered_and_send_exits_1(rendered, tmp_path, capsys):
    from kpi_lib.cli import main

    out = copy_of(rendered, tmp_path)
    reps = rendered["reps"]
    me, other = reps.iloc[0], reps[reps["team_id"] != reps.iloc[0]["team_id"]].iloc[0]
    page = out / PERIOD / "rep" / f"{me.rep_id}.html"
    page.write_text(page.read_text().replace("</main>", f"<p>Also: {other.rep_name}</p></main>", 1))
    outbox = out / PERIOD / "outbox"
    for eml in outbox.glob("*.eml"):
        eml.unlink()

    code = main(
        ["send", "--period", PERIOD, "--out", str(out), "--recipients", str(rendered["recipients"])]
    )
    err = capsys.readouterr().err

    assert code == 1
    # the rep and their manager would have received the page: neither message exists
    assert f"FAILED {me.rep_id.lower()}@example.com: scope leak: rep " in err
    assert f"FAILED lead-{me.team_id}@example.com: scope leak: rep " in err
    assert not (outbox / f"{me.rep_id.lower()}@example.com.eml").exists()
    assert len(list(outbox.glob("*.eml"))) == 5
    LEAKS_FOUND.append(err)
