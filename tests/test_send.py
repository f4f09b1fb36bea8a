"""Delivery: .eml files by default, SMTP with a ledger that never double-sends, retries.

The SMTP tests run a real aiosmtpd server on 127.0.0.1 (a free port) and send the demo batch of
2026-10 with stand-in reports to four recipients (``tests/_delivery.py``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from _delivery import (
    GRANTED,
    RECIPIENTS,
    ROOT,
    build_batch,
    copy_batch,
    free_port,
    write_recipients,
)

from kpi_lib import cli
from kpi_lib.periods import Period
from kpi_lib.publish.send import Ledger, RetryPolicy, send_batch, smtp_settings

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02)


# --------------------------------------------------------------------------------------------
# Pieces
# --------------------------------------------------------------------------------------------


def test_retry_delays_double_from_the_base_up_to_the_cap():
    policy_ = RetryPolicy(attempts=6, base_delay=2, max_delay=10)
    assert [policy_.delay(i) for i in range(1, 6)] == [2, 4, 8, 10, 10]


def test_the_ledger_survives_a_torn_last_line(tmp_path):
    path = tmp_path / "ledger.jsonl"
    ledger = Ledger(path)
    ledger.append({"key": Ledger.key("A@example.com", "2026-10/final"), "email": "a"})
    with open(path, "a") as f:
        f.write('{"key": "b@example.com|2026-10/fi')  # killed mid-write
    again = Ledger(path)
    assert "a@example.com|2026-10/final" in again
    assert len(again.entries) == 1


def test_a_user_without_the_password_variable_is_a_config_error(monkeypatch):
    monkeypatch.delenv("KPI_SMTP_PASSWORD", raising=False)
    with pytest.raises(Exception, match="KPI_SMTP_PASSWORD"):
        smtp_settings("mail.example.com", user="ops")


def test_the_password_is_not_in_the_settings_repr(monkeypatch):
    monkeypatch.setenv("KPI_SMTP_PASSWORD", "hunter2-secret")
    settings = smtp_settings("mail.example.com", security="starttls", user="ops")
    assert settings.port == 587 and "hunter2" not in repr(settings)


# --------------------------------------------------------------------------------------------
# A batch and an SMTP server
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    return build_batch(tmp_path_factory.mktemp("template"))


@pytest.fixture
def out(template, tmp_path) -> Path:
    """A private reports folder holding the batch of 2026-10; returns the folder."""
    copy_batch(template, tmp_path / "reports")
    return tmp_path / "reports"


@pytest.fixture
def recipients(tmp_path) -> Path:
    return write_recipients(tmp_path / "recipients.yaml")


class Inbox:
    """An aiosmtpd handler that keeps every accepted message and can misbehave on cue.

    ``drop`` / ``defer``: numbers of DATA commands (1-based, attempts included) answered by
    dropping the connection or with 421; ``reject``: addresses refused with 550; ``kill``:
    ``(n, pid)`` SIGKILLs the sending process when DATA number ``n`` arrives.
    """

    def __init__(self):
        self.messages: list[tuple[list[str], bytes]] = []
        self.data_count = 0
        self.drop: set[int] = set()
        self.defer: set[int] = set()
        self.reject: set[str] = set()
        self.kill: tuple[int, int] | None = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.reject:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.data_count += 1
        n = self.data_count
        if self.kill and n == self.kill[0]:
            os.kill(self.kill[1], signal.SIGKILL)
            return "451 4.3.0 sender gone"
        if n in self.drop:
            server.transport.close()
            return "421 4.3.0 closing"
        if n in self.defer:
            return "421 4.3.0 try again later"
        self.messages.append((list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"

    def per_recipient(self) -> Counter:
        return Counter(r for rcpts, _ in self.messages for r in rcpts)

    def parsed(self) -> dict[str, object]:
        return {
            rcpts[0]: message_from_bytes(raw, policy=policy.default) for rcpts, raw in self.messages
        }


@pytest.fixture
def smtp_server():
    """``(inbox, port)``: a real SMTP server on loopback for one test."""
    from aiosmtpd.controller import Controller

    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def send_cli(out: Path, recipients: Path, port: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kpi_lib",
            "send",
            "--period",
            "2026-10",
            "--out",
            str(out),
            "--recipients",
            str(recipients),
            "--smtp-host",
            "127.0.0.1",
            "--smtp-port",
            str(port),
            "--retries",
            "2",
            "--retry-delay",
            "0.01",
            *extra,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# --------------------------------------------------------------------------------------------
# Sending
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_without_a_host_each_digest_is_an_eml_file_in_the_outbox(out, recipients):
    result = send_batch(Period.parse("2026-10"), out=out, recipients=recipients, log=lambda _: None)
    outbox = out / "2026-10" / "outbox"
    files = sorted(p.name for p in outbox.glob("*.eml"))
    assert files == sorted(f"{r['email']}.eml" for r in RECIPIENTS["recipients"])
    assert result.sent and not result.failed
    assert not (outbox / "ledger.jsonl").exists()
    msg = message_from_bytes((outbox / "ceo@example.com.eml").read_bytes(), policy=policy.default)
    assert msg["To"] == "Dana Whitfield <ceo@example.com>"
    assert not list(outbox.glob(".*tmp*"))


@pytest.mark.slow
def test_a_real_smtp_server_receives_each_recipient_their_scopes_only(out, recipients, smtp_server):
    inbox, port = smtp_server
    result = send_batch(
        Period.parse("2026-10"),
        out=out,
        recipients=recipients,
        smtp=smtp_settings("127.0.0.1", port),
        retry=FAST,
        log=lambda _: None,
    )
    assert sorted(result.sent) == sorted(GRANTED) and not result.failed
    assert inbox.per_recipient() == Counter({email: 1 for email in GRANTED})
    for email, msg in inbox.parsed().items():
        assert msg["To"].addresses[0].addr_spec == email
        names = [p.get_filename() for p in msg.iter_attachments()]
        scopes = {n.split("2026-10-", 1)[1].split("-", 1)[1].rsplit(".", 1)[0] for n in names}
        assert scopes == GRANTED[email]
        assert len(names) == 2 * len(GRANTED[email])
        for part in msg.iter_attachments():
            if part.get_content_type() == "application/pdf":
                assert part.get_content().startswith(b"%PDF")
            else:
                assert part.get_content().startswith("<!DOCTYPE html>")
        html_part = msg.get_body(("html",))
        assert len(html_part.get_content().encode()) < 100_000
    ledger = Ledger(out / "2026-10" / "outbox" / "ledger.jsonl")
    assert {e["email"] for e in ledger.entries.values()} == set(GRANTED)


@pytest.mark.slow
def test_without_chromium_each_digest_goes_out_with_the_html_report_and_the_ledger_says_so(
    out, recipients, smtp_server, monkeypatch
):
    inbox, port = smtp_server
    monkeypatch.setenv("KPI_CHROMIUM", str(out / "no-such-chromium"))
    lines: list[str] = []
    result = send_batch(
        Period.parse("2026-10"),
        out=out,
        recipients=recipients,
        smtp=smtp_settings("127.0.0.1", port),
        retry=FAST,
        log=lines.append,
    )
    assert sorted(result.sent) == sorted(GRANTED) and not result.failed
    assert [w for w in result.warnings if "no-such-chromium" in w and "PDF" in w]
    assert "warning" in result.summary() and any("no-such-chromium" in line for line in lines)
    for email, msg in inbox.parsed().items():
        types = [p.get_content_type() for p in msg.iter_attachments()]
        assert types == ["text/html"] * len(GRANTED[email])
        assert ".pdf" not in msg.get_body(("plain",)).get_content()
    ledger = Ledger(out / "2026-10" / "outbox" / "ledger.jsonl")
    pdf_notes = {e["pdf"] for e in ledger.entries.values()}
    assert len(ledger.entries) == 4 and len(pdf_notes) == 1
    assert pdf_notes.pop().startswith("missing: Chromium not found at")


@pytest.mark.slow
def test_a_rerun_sends_nothing_already_in_the_ledger(out, recipients, smtp_server):
    inbox, port = smtp_server
    settings = smtp_settings("127.0.0.1", port)
    send_batch(
        Period.parse("2026-10"),
        out=out,
        recipients=recipients,
        smtp=settings,
        retry=FAST,
        log=lambda _: None,
    )
    again = send_batch(
        Period.parse("2026-10"),
        out=out,
        recipients=recipients,
        smtp=settings,
        retry=FAST,
        log=lambda _: None,
    )
    assert again.sent == [] and sorted(again.already_sent) == sorted(GRANTED)
    assert len(inbox.messages) == 4


@pytest.mark.slow
def test_a_sender_killed_halfway_and_rerun_delivers_exactly_one_email_each(
    out, recipients, smtp_server
):
    inbox, port = smtp_server
    first = send_cli(out, recipients, port)
    inbox.kill = (3, first.pid)  # SIGKILL the sender when its third message arrives
    first.communicate(timeout=120)
    assert first.returncode == -signal.SIGKILL
    assert len(inbox.messages) == 2
    inbox.kill = None
    second = send_cli(out, recipients, port)
    _, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert "2 already sent earlier (ledger)" in err
    assert inbox.per_recipient() == Counter({email: 1 for email in GRANTED})


@pytest.mark.slow
def test_a_dropped_connection_and_a_421_are_retried_with_backoff(out, recipients, smtp_server):
    inbox, port = smtp_server
    inbox.drop, inbox.defer = {2}, {4}
    waits: list[float] = []
    result = send_batch(
        Period.parse("2026-10"),
        out=out,
        recipients=recipients,
        smtp=smtp_settings("127.0.0.1", port),
        retry=RetryPolicy(attempts=3, base_delay=0.5, max_delay=4),
        log=lambda _: None,
        sleep=waits.append,
    )
    assert not result.failed
    assert waits == [0.5, 0.5]
    assert inbox.per_recipient() == Counter({email: 1 for email in GRANTED})


@pytest.mark.slow
def test_a_refused_recipient_fails_with_exit_1_and_a_rerun_sends_only_that_one(
    out, recipients, smtp_server, capsys
):
    inbox, port = smtp_server
    inbox.reject = {"emm@example.com"}
    args = [
        "send",
        "--period",
        "2026-10",
        "--out",
        str(out),
        "--recipients",
        str(recipients),
        "--smtp-host",
        "127.0.0.1",
        "--smtp-port",
        str(port),
        "--retry-delay",
        "0.01",
    ]
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert "3 digests sent via smtp" in err and "1 failed" in err
    assert "FAILED emm@example.com: 550 5.1.1 mailbox unavailable" in err
    inbox.reject = set()
    assert cli.main(args) == 0
    assert inbox.per_recipient() == Counter({email: 1 for email in GRANTED})


@pytest.mark.slow
def test_an_unreachable_server_fails_everyone_quickly_with_exit_1(out, recipients, capsys):
    port = free_port()  # nothing listens there
    code = cli.main(
        [
            "send",
            "--period",
            "2026-10",
            "--out",
            str(out),
            "--recipients",
            str(recipients),
            "--smtp-host",
            "127.0.0.1",
            "--smtp-port",
            str(port),
            "--retries",
            "2",
            "--retry-delay",
            "0.01",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "0 digests sent" in err and "4 failed" in err
    assert err.count(f"not attempted: SMTP server 127.0.0.1:{port} unavailable") == 3


@pytest.mark.slow
def test_the_password_comes_from_the_environment_and_is_written_nowhere(
    out, recipients, monkeypatch, capsys
):
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    secret = "pw-Zq81-never-log-me"

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == b"ops" and auth_data.password == secret.encode()
        return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535

    inbox, port = Inbox(), free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticator,
        auth_require_tls=False,
        auth_exclude_mechanism=["LOGIN"],
    )
    controller.start()
    try:
        args = [
            "send",
            "--period",
            "2026-10",
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
        ]
        monkeypatch.setenv("KPI_SMTP_PASSWORD", "wrong-" + secret)
        assert cli.main(args) == 2
        refused = capsys.readouterr().err
        assert "refused the login of user ops" in refused and secret not in refused
        monkeypatch.setenv("KPI_SMTP_PASSWORD", secret)
        assert cli.main(args) == 0
        err = capsys.readouterr().err
    finally:
        controller.stop()
    assert len(inbox.messages) == 4
    assert secret not in err
    for path in out.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
