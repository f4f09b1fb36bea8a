"""Hostile content: CRM strings are data, never markup or code.

A demo CRM whose rep, team, account and stage names carry HTML and script payloads is rendered
with the real report notebooks, its digests are written, and every page (reports, the index,
each digest's HTML body) is opened in headless Chromium with a trap for ``alert`` dialogs and a
flag the payloads would set (``window.__xss``): no script may run, and the payload must read
as text. Parameters are covered too: an id that is Python is refused before rendering, and any
string papermill passes to a kernel arrives as a string, not as code.
"""

from __future__ import annotations

import json
from email import message_from_bytes, policy
from pathlib import Path

import pandas as pd
import pytest
import yaml

from kpi_lib.cli import main
from kpi_lib.periods import Period

ROOT = Path(__file__).resolve().parent.parent
PERIOD = "2026-10"
AS_OF = "2026-11-05"
CHROMIUM = "/usr/bin/chromium"
PAYLOADS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '"><svg onload=alert(1)>',
    '<img src=x onerror="window.__xss=1">',
    "<script>window.__xss=1</script>",
    '\'"><iframe srcdoc="<script>parent.__xss=1</script>">',
]
INPUTS_TRIED: list[str] = []


def hostile(name: str, i: int) -> str:
    return f"{name} {PAYLOADS[i % len(PAYLOADS)]}"


def hostile_tables() -> dict:
    """The demo CRM (12 reps in 6 teams) with a payload in every rep, team, account and open
    stage name."""
    from kpi_lib.data.demo import generate_demo_tables

    tables = generate_demo_tables(end=PERIOD, seed=7, scale=0.3)
    teams, reps, accounts = tables["teams"], tables["reps"], tables["accounts"]
    teams["team_name"] = [hostile(n, i) for i, n in enumerate(teams["team_name"])]
    reps["rep_name"] = [hostile(n, i + 1) for i, n in enumerate(reps["rep_name"])]
    accounts["account_name"] = [hostile(n, i + 2) for i, n in enumerate(accounts["account_name"])]
    stages = {
        "Proposal": hostile("Proposal", 3),
        "Demo": hostile("Demo", 0),
        "Negotiation": hostile("Negotiation", 2),
    }
    for name in ("opportunities", "stage_history"):
        tables[name]["stage"] = tables[name]["stage"].replace(stages)
    return tables


@pytest.fixture(scope="module")
def batch_dir(tmp_path_factory) -> Path:
    """``<out>/2026-10`` rendered from the hostile CRM (company, one team, its reps) and sent
    as .eml files to an executive, the team's manager and one rep."""
    from kpi_lib.publish.render import render_batch
    from kpi_lib.publish.send import send_batch

    work = tmp_path_factory.mktemp("hostile")
    source = work / "crm"
    source.mkdir()
    tables = hostile_tables()
    for name, df in tables.items():
        df.to_parquet(source / f"{name}.parquet", index=False)
    team = str(tables["teams"]["team_id"].iloc[0])
    reps = [str(r) for r in tables["reps"].query("team_id == @team")["rep_id"]]
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
                        "scope_ids": [team],
                    },
                    "rep": {
                        "notebook": str(ROOT / "notebooks/rep.ipynb"),
                        "scope": "rep",
                        "scope_ids": reps,
                    },
                }
            }
        )
    )
    result = render_batch(
        Period.parse(PERIOD),
        source=str(source),
        out=str(work / "reports"),
        as_of=AS_OF,
        matrix=matrix,
        progress=False,
        jobs=2,
    )
    assert result.failed == [], result.summary()
    recipients = work / "recipients.yaml"
    recipients.write_text(
        yaml.safe_dump(
            {
                "recipients": [
                    {"email": "ceo@example.com", "name": hostile("Dana", 0), "role": "executive"},
                    {
                        "email": "boss@example.com",
                        "name": "Grace Okafor",
                        "role": "manager",
                        "team_id": team,
                    },
                    {
                        "email": "rep@example.com",
                        "name": "Rep One",
                        "role": "rep",
                        "rep_id": reps[0],
                    },
                ]
            }
        )
    )
    sent = send_batch(
        Period.parse(PERIOD), out=work / "reports", recipients=recipients, log=lambda _: None
    )
    assert sent.failed == [] and len(sent.sent) == 3, sent.summary()
    INPUTS_TRIED.extend(PAYLOADS)
    return work / "reports" / PERIOD


def pages(batch_dir: Path) -> list[Path]:
    """Every page a person may open: the reports, the index and each digest's HTML body."""
    found = sorted(batch_dir.glob("*/*.html")) + [batch_dir / "index.html"]
    bodies = batch_dir / "_bodies"
    bodies.mkdir(exist_ok=True)
    for eml in sorted((batch_dir / "outbox").glob("*.eml")):
        msg = message_from_bytes(eml.read_bytes(), policy=policy.default)
        body = bodies / f"{eml.stem}.html"
        body.write_text(msg.get_body(("html",)).get_content())
        found.append(body)
    return found


@pytest.mark.slow
def test_no_payload_runs_in_any_report_digest_or_index_opened_in_chromium(batch_dir):
    from playwright.sync_api import sync_playwright

    opened = pages(batch_dir)
    assert len(opened) == 1 + 1 + 2 + 1 + 3  # company, team, 2 reps, index, 3 digests
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            for path in opened:
                page = browser.new_page()
                dialogs: list[str] = []
                page.on("dialog", lambda d, seen=dialogs: (seen.append(d.message), d.dismiss()))
                page.add_init_script("window.alert = (m) => { window.__alerted = String(m); };")
                page.route("http*://**", lambda route: route.abort())
                page.goto(path.as_uri(), wait_until="load")
                page.wait_for_timeout(200)
                ran = page.evaluate(
                    "[window.__xss, window.__alerted,"
                    " document.querySelectorAll('script, svg[onload], iframe,"
                    " img[onerror]').length]"
                )
                text = page.evaluate("document.body.innerText")
                page.close()
                assert dialogs == [] and ran == [None, None, 0], (path.name, dialogs, ran)
                shown = [x for x in PAYLOADS if x in text]
                assert shown, f"{path.name}: no payload shown as text"
        finally:
            browser.close()


@pytest.mark.slow
def test_payloads_are_escaped_in_the_html_source_and_stay_out_of_mail_headers(batch_dir):
    for path in pages(batch_dir):
        source = path.read_text()
        for payload in PAYLOADS:
            assert payload not in source, (path.name, payload)
        assert "&lt;script&gt;" in source or "&lt;img" in source, path.name
    for eml in (batch_dir / "outbox").glob("*.eml"):
        msg = message_from_bytes(eml.read_bytes(), policy=policy.default)
        for header in ("Subject", "To", "From"):
            assert "\n" not in str(msg[header]) and "\r" not in str(msg[header])


@pytest.mark.slow
def test_the_hostile_batch_has_no_scope_leak(batch_dir):
    from kpi_lib.publish.audit import scan_batch

    assert scan_batch(batch_dir.parent, Period.parse(PERIOD)) == []


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------

CODE_IDS = [
    "x'); import os; os.system('touch {marker}'); ('",
    'x"); __import__("os").system("touch {marker}"); ("',
    "x\nimport os\nos.system('touch {marker}')",
    "x'''\nopen('{marker}', 'w')\n'''",
    "x\\\"; open('{marker}', 'w') #",
]


@pytest.mark.slow
def test_crm_ids_that_are_python_render_as_text_and_run_nothing(tmp_path, capsys):
    """Ids are data: each id below names a rep whose report renders, under a safe file name,
    with the id intact in the manifest; no id runs as code."""
    marker = tmp_path / "pwned"
    evil = [template.format(marker=marker) for template in CODE_IDS]
    source = tmp_path / "crm"
    source.mkdir()
    (source / "teams.csv").write_text("team_id,team_name\neast,East\n")
    pd.DataFrame(
        {
            "rep_id": ["r1", *evil],
            "rep_name": ["Ann", *[f"Mallory {i}" for i in range(len(evil))]],
            "team_id": "east",
        }
    ).to_csv(source / "reps.csv", index=False)
    pd.DataFrame(
        {
            "opportunity_id": [f"O{i}" for i in range(len(evil) + 1)],
            "owner_rep_id": ["r1", *evil],
            "created_at": "2026-09-01",
            "stage": "Won",
            "is_closed": True,
            "is_won": True,
            "closed_at": "2026-10-05",
            "amount": 1000.0,
        }
    ).to_csv(source / "opportunities.csv", index=False)
    out = tmp_path / "reports"

    code = main(
        ["render", "--period", PERIOD, "--source", str(source), "--out", str(out), "--as-of", AS_OF]
    )
    err = capsys.readouterr().err

    assert code == 0, err
    assert not marker.exists()
    manifest = json.loads((out / PERIOD / "manifest.json").read_text())
    reports = {r["scope_id"]: r for r in manifest["reports"] if r["role"] == "rep"}
    assert set(reports) == {"r1", *evil}
    for rep_id in evil:
        page = out / PERIOD / reports[rep_id]["html"]
        assert reports[rep_id]["status"] == "ok" and page.parent == out / PERIOD / "rep"
        assert f"Mallory {evil.index(rep_id)}" in page.read_text(encoding="utf-8")
    INPUTS_TRIED.extend(evil)


@pytest.mark.slow
def test_papermill_passes_any_string_to_the_kernel_as_a_string_literal(tmp_path):
    """Even past the id check, a parameter cannot become code: every value arrives intact."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from kpi_lib.publish.execute import execute_report

    marker = tmp_path / "pwned"
    values = {
        name: template.format(marker=marker)
        for name, template in zip(
            ["period", "scope_id", "source", "batch_dir", "targets"], CODE_IDS, strict=True
        )
    }
    nb = new_notebook(
        cells=[
            new_code_cell(
                'period = ""\nscope_id = ""\nsource = ""\nbatch_dir = ""\ntargets = ""',
                metadata={"tags": ["parameters"]},
            ),
            new_code_cell(
                "import json\nprint(json.dumps([period, scope_id, source, batch_dir, targets]))"
            ),
        ],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    notebook = tmp_path / "echo.ipynb"
    nbformat.write(nb, notebook)
    executed = tmp_path / "out.ipynb"

    execute_report(notebook, executed, values, timeout=120)

    out = nbformat.read(executed, as_version=4)
    echoed = json.loads(out.cells[-1].outputs[0]["text"])
    assert echoed == list(values.values())
    assert not marker.exists()
    INPUTS_TRIED.extend(values.values())
