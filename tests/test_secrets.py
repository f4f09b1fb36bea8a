"""Secrets: a database password and the SMTP password appear in no output of a batch.

``kpi_lib.redact`` is the one place that masks them; it is specified on its own first. Then the
error path (a URL with a password to a closed port), and a whole run for real: a PostgreSQL 15
server that demands a password, a batch rendered from it with the real notebooks (the kernels
must reach the database, so they get the real URL, but only through the environment), digests
sent to an SMTP server that demands a login; then every file of the output folder and
everything the commands printed are searched for both passwords.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from _postgres import free_port, load_tables, throwaway_postgres

from kpi_lib.cli import main
from kpi_lib.redact import hide_source, redact, reveal

ROOT = Path(__file__).resolve().parent.parent
PERIOD = "2026-10"
AS_OF = "2026-11-05"
DB_PASSWORD = "Db-s3cret-9f2c"
SMTP_PASSWORD = "Smtp-s3cret-77aa"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("postgresql://kpi:Db-s3cret@db:5432/crm", "postgresql://kpi:***@db:5432/crm"),
        (
            "cannot connect to mysql://root:p%40ss@10.0.0.1/x: refused",
            "cannot connect to mysql://root:***@10.0.0.1/x: refused",
        ),
        (
            "source 'snowflake://u:pw@acct/db/schema?warehouse=w'",
            "source 'snowflake://u:***@acct/db/schema?warehouse=w'",
        ),
        ("host=db user=kpi password=s3cret dbname=crm", "host=db user=kpi password=*** dbname=crm"),
        ("Server=db;PWD=s3cret;Database=crm", "Server=db;PWD=***;Database=crm"),
        ("postgresql://kpi@db/crm, data/demo.duckdb", "postgresql://kpi@db/crm, data/demo.duckdb"),
        ("http://example.com:8080/path", "http://example.com:8080/path"),
    ],
)
def test_redact_masks_passwords_in_urls_and_connection_strings(text, expected):
    assert redact(text) == expected


def test_redact_masks_the_smtp_password_wherever_it_appears(monkeypatch):
    monkeypatch.setenv("KPI_SMTP_PASSWORD", SMTP_PASSWORD)
    assert redact(f"login failed ({SMTP_PASSWORD!r})") == "login failed ('***')"


def test_the_real_url_goes_to_the_environment_and_comes_back_only_from_its_redaction(monkeypatch):
    monkeypatch.delenv("KPI_SOURCE_URL", raising=False)
    url = f"postgresql://kpi:{DB_PASSWORD}@127.0.0.1:5/crm"
    shown = hide_source(url)
    assert shown == "postgresql://kpi:***@127.0.0.1:5/crm"
    assert os.environ["KPI_SOURCE_URL"] == url
    assert reveal(shown) == url
    assert reveal("postgresql://eve:***@127.0.0.1:5/crm") == "postgresql://eve:***@127.0.0.1:5/crm"
    assert redact(f"the driver said: {DB_PASSWORD} is wrong") == "the driver said: *** is wrong"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "POST https://hooks.slack.com/services/T01/B02/XyZ123 failed",
            "POST https://hooks.slack.com/*** failed",
        ),
        (
            "https://acme.webhook.office.com/webhookb2/a1@b2/IncomingWebhook/c3/d4 said 429",
            "https://acme.webhook.office.com/*** said 429",
        ),
        (
            "https://prod-12.westeurope.logic.azure.com:443/workflows/w1/triggers/manual/paths/"
            "invoke?api-version=2016-06-01&sp=%2Ftriggers&sv=1.0&sig=Q9s3cr3t",
            "https://prod-12.westeurope.logic.azure.com:443/workflows/w1/triggers/manual/paths/"
            "invoke?api-version=2016-06-01&sp=%2Ftriggers&sv=1.0&sig=***",
        ),
        (
            "https://hooks.example.com/ is not a webhook shape",
            "https://hooks.example.com/ is not a webhook shape",
        ),
    ],
)
def test_redact_masks_slack_and_teams_webhook_urls(text, expected):
    assert redact(text) == expected


def test_a_webhook_url_read_from_the_recipients_file_is_masked_wherever_it_appears(tmp_path):
    from kpi_lib.publish.recipients import load_recipients

    url = "https://chat.internal.example/hook/Wh-s3cret-91"  # no known shape: registered
    path = tmp_path / "recipients.yaml"
    path.write_text(yaml.safe_dump({"recipients": [{"slack": url, "role": "executive"}]}))
    assert redact(f"cannot post to {url}") == f"cannot post to {url}"  # not known yet
    load_recipients(path)
    assert redact(f"cannot post to {url}: 404") == "cannot post to ***: 404"


@pytest.mark.parametrize(
    "command", [["kpis", "--period", PERIOD], ["validate"], ["render", "--period", PERIOD]]
)
def test_a_url_with_a_password_to_a_closed_port_fails_without_the_password(
    tmp_path, capsys, monkeypatch, command
):
    monkeypatch.delenv("KPI_SOURCE_URL", raising=False)
    url = f"postgresql://kpi:{DB_PASSWORD}@127.0.0.1:{free_port()}/crm"
    extra = ["--out", str(tmp_path / "reports")] if command[0] == "render" else []
    code = main([*command, "--source", url, *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "cannot connect to postgresql://kpi:***@127.0.0.1:" in err
    assert DB_PASSWORD not in err
    assert not (tmp_path / "reports").exists()


# --------------------------------------------------------------------------------------------
# A whole run against servers that want passwords
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL 15 server that accepts user ``kpi`` with ``DB_PASSWORD`` only (scram)."""
    with throwaway_postgres(DB_PASSWORD) as url:
        yield url


@pytest.mark.slow
def test_no_output_of_a_render_and_send_holds_either_password(postgres, tmp_path):
    import ibis
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    from kpi_lib.data.demo import generate_demo_tables

    tables = generate_demo_tables(end=PERIOD, seed=7, scale=0.2)
    load_tables(postgres, tables)
    with pytest.raises(Exception, match="password authentication failed"):
        ibis.connect(postgres.replace(DB_PASSWORD, "wrong-password")).list_tables()

    rep = str(tables["reps"]["rep_id"].iloc[0])
    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "reports.yaml").write_text(
        yaml.safe_dump(
            {
                "roles": {
                    "executive": {
                        "notebook": str(ROOT / "notebooks/executive.ipynb"),
                        "scope": "company",
                    },
                    "rep": {
                        "notebook": str(ROOT / "notebooks/rep.ipynb"),
                        "scope": "rep",
                        "scope_ids": [rep],
                    },
                }
            }
        )
    )
    recipients = tmp_path / "recipients.yaml"
    recipients.write_text(
        yaml.safe_dump(
            {
                "recipients": [
                    {"email": "ceo@example.com", "name": "Dana Whitfield", "role": "executive"},
                    {"email": "rep@example.com", "name": "Rep One", "role": "rep", "rep_id": rep},
                ]
            }
        )
    )

    class Inbox:
        messages: list[bytes] = []

        async def handle_DATA(self, server, session, envelope):
            self.messages.append(envelope.original_content)
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == b"ops" and auth_data.password == SMTP_PASSWORD.encode()
        return AuthResult(success=ok, handled=False)

    inbox, port = Inbox(), free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticator,
        auth_require_tls=False,
        auth_exclude_mechanism=["LOGIN"],
    )
    env = {k: v for k, v in os.environ.items() if k != "KPI_SOURCE_URL"}
    env["KPI_SMTP_PASSWORD"] = SMTP_PASSWORD
    out = tmp_path / "reports"
    controller.start()
    try:
        renders = [
            subprocess.run(  # a fresh batch, then again for a later day (a rerun)
                [
                    sys.executable,
                    "-m",
                    "kpi_lib",
                    "render",
                    "--period",
                    PERIOD,
                    "--source",
                    postgres,
                    "--out",
                    str(out),
                    "--as-of",
                    as_of,
                    "--jobs",
                    "2",
                ],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=400,
            )
            for as_of in (AS_OF, "2026-11-06")
        ]
        send = subprocess.run(
            [
                sys.executable,
                "-m",
                "kpi_lib",
                "send",
                "--period",
                PERIOD,
                "--out",
                str(out),
                "--recipients",
                str(recipients),
                "--smtp-host",
                "127.0.0.1",
                "--smtp-port",
                str(port),
                "--smtp-user",
                "ops",
                "--retry-delay",
                "0.01",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        eml = subprocess.run(  # the .eml dry run too
            [
                sys.executable,
                "-m",
                "kpi_lib",
                "send",
                "--period",
                PERIOD,
                "--out",
                str(out),
                "--recipients",
                str(recipients),
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        controller.stop()

    for render in renders:
        assert render.returncode == 0, render.stderr
    assert send.returncode == 0 and eml.returncode == 0, send.stderr + eml.stderr
    assert len(inbox.messages) == 2 and len(list(out.rglob("*.eml"))) == 2
    period_dir = out / PERIOD
    # The rep report ran its detail queries against the database (open deals need the source).
    assert "postgresql://kpi:***@127.0.0.1" in (period_dir / "manifest.json").read_text()
    assert "postgresql://kpi:***@127.0.0.1" in (period_dir / "rep" / f"{rep}.html").read_text()

    outputs = [p for p in out.rglob("*") if p.is_file()]
    assert len(outputs) >= 10
    texts = {
        "render stdout+stderr": "".join(r.stdout + r.stderr for r in renders),
        "send stdout+stderr": send.stdout + send.stderr + eml.stdout + eml.stderr,
    }
    texts |= {f"message {i}": m.decode("utf-8", "replace") for i, m in enumerate(inbox.messages)}
    leaks = [
        str(p)
        for p in outputs
        for secret in (DB_PASSWORD, SMTP_PASSWORD)
        if secret.encode() in p.read_bytes()
    ]
    leaks += [
        name
        for name, text in texts.items()
        for secret in (DB_PASSWORD, SMTP_PASSWORD)
        if secret in text
    ]
    assert leaks == []
    print(f"\nsecrets: scanned {len(outputs)} files and {len(texts)} outputs, 0 leaks")
