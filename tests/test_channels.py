"""Slack and Teams channels: recipients with an incoming webhook, one post per scope.

A local HTTP server stands in for the webhooks (``tests/_webhooks.py``) and records each
request. Payloads are checked against the services' documented shapes and limits, written out
here from the documentation rather than taken from the code under test:

- Slack Block Kit: at most 50 blocks a message; a header's ``plain_text`` at most 150
  characters; a section's text at most 3,000 characters, its fields at most 10 of 2,000; the
  top-level ``text`` is truncated past 40,000 characters (docs.slack.dev, reference/block-kit).
- Teams: ``{"type": "message", "attachments": [{"contentType":
  "application/vnd.microsoft.card.adaptive", "contentUrl": null, "content": <AdaptiveCard>}]}``,
  a card of schema 1.5 or lower, the message at most 28 KB (learn.microsoft.com, "Create an
  Incoming Webhook" and "Send Adaptive Cards using an Incoming Webhook").
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from _delivery import build_batch, copy_batch
from _webhooks import webhook_server

from kpi_lib import cli
from kpi_lib.errors import ParamsError
from kpi_lib.metrics.registry import get_kpi
from kpi_lib.periods import Period
from kpi_lib.publish import channels
from kpi_lib.publish.channels import Post, payload_text, slack_payload, teams_payload
from kpi_lib.publish.digest import Figures, Tile
from kpi_lib.publish.ledger import Ledger
from kpi_lib.publish.recipients import load_recipients
from kpi_lib.publish.retry import RetryPolicy
from kpi_lib.publish.send import send_batch
from kpi_lib.redact import redact

FAST = RetryPolicy(attempts=3, base_delay=0.5, max_delay=2)
SECRET = "s3cr3t-T0KEN-do-not-log"
EXEC, MANAGER, REP = (
    f"/services/T01/B-exec/{SECRET}",
    f"/workflows/manager/{SECRET}",
    f"/services/T01/B-rep/{SECRET}",
)


# --------------------------------------------------------------------------------------------
# The documented limits, as a test reads them
# --------------------------------------------------------------------------------------------


def assert_slack_message(payload: dict) -> None:
    assert set(payload) == {"text", "blocks"}
    assert isinstance(payload["text"], str) and 0 < len(payload["text"]) <= 40_000
    blocks = payload["blocks"]
    assert 0 < len(blocks) <= 50
    assert blocks[0]["type"] == "header"
    assert blocks[0]["text"]["type"] == "plain_text" and 0 < len(blocks[0]["text"]["text"]) <= 150
    for b in blocks[1:]:
        assert b["type"] in ("section", "context"), b
        if b["type"] == "section":
            assert "text" in b or "fields" in b
            if "text" in b:
                assert b["text"]["type"] == "mrkdwn" and 0 < len(b["text"]["text"]) <= 3000
            fields = b.get("fields", [])
            assert len(fields) <= 10
            assert all(f["type"] == "mrkdwn" and 0 < len(f["text"]) <= 2000 for f in fields)
        else:
            assert 0 < len(b["elements"]) <= 10
    # Slack refuses block sets of about 13,000 characters (msg_blocks_too_long)
    assert len(json.dumps(blocks, ensure_ascii=False)) < 13_000 + 4_000


def assert_teams_message(payload: dict) -> None:
    assert payload["type"] == "message"
    (attachment,) = payload["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert "contentUrl" in attachment and attachment["contentUrl"] is None
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard"
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert tuple(int(x) for x in card["version"].split(".")) <= (1, 5)
    assert card["body"] and all(e["type"] in ("TextBlock", "FactSet") for e in card["body"])
    for action in card.get("actions", []):
        assert action["type"] == "Action.OpenUrl" and action["url"].startswith("https://")
    assert len(json.dumps(payload).encode("utf-8")) <= 28 * 1024


# --------------------------------------------------------------------------------------------
# Payloads, by hand
# --------------------------------------------------------------------------------------------


def tiles(n: int, text: str = "") -> list[Tile]:
    return [
        Tile(f"k{i}", f"KPI {i}{text}", "$1.2M", "96% of $1.25M target", "good", "▲ +12%", "good")
        for i in range(n)
    ]


def test_a_short_post_is_a_header_fields_what_moved_and_a_footer_with_the_link():
    post = Post("Sales KPIs October 2026 — Company", tiles(11), ["Revenue +12%."], "Data.", None)
    post = Post(post.title, post.tiles, post.sentences, post.footer, "https://r.example/a b.html")
    slack = slack_payload(post)
    assert_slack_message(slack)
    assert [b["type"] for b in slack["blocks"]] == [
        "header",
        "section",
        "section",
        "section",
        "context",
    ]
    assert len(slack["blocks"][1]["fields"]) == 10 and len(slack["blocks"][2]["fields"]) == 1
    assert slack["blocks"][1]["fields"][0]["text"] == (
        "*KPI 0*\n$1.2M · 96% of $1.25M target · ▲ +12%"
    )
    assert "*What moved*\n• Revenue +12%." == slack["blocks"][3]["text"]["text"]
    assert (
        "<https://r.example/a b.html|Open the full report>"
        in slack["blocks"][4]["elements"][0]["text"]
    )
    teams = teams_payload(post)
    assert_teams_message(teams)
    card = teams["attachments"][0]["content"]
    assert card["body"][1]["facts"][0] == {
        "title": "KPI 0",
        "value": "$1.2M · 96% of $1.25M target · ▲ +12%",
    }
    assert card["actions"][0]["url"] == "https://r.example/a b.html"


def test_a_huge_post_stays_within_both_services_limits_and_says_what_it_left_out():
    long = "x" * 5000
    post = Post("T" * 400, tiles(11, long), [f"{i} {long}" for i in range(60)], long, None)
    slack = slack_payload(post)
    assert_slack_message(slack)
    assert "more in the report" in payload_text(slack)
    teams = teams_payload(post)
    assert_teams_message(teams)
    assert "more in the report" in payload_text(teams)


def test_crm_text_cannot_mention_everyone_or_smuggle_a_link():
    name = "<!channel> [click](https://evil.example) & co"
    post = Post(f"Sales KPIs — {name}", tiles(1, name), [name], "Data.", None)
    slack = slack_payload(post)
    header, rest = slack["blocks"][0], {**slack, "blocks": slack["blocks"][1:]}
    assert header["text"]["type"] == "plain_text"  # plain text: no mention is parsed there
    assert "<!channel>" not in json.dumps(rest, ensure_ascii=False)
    assert "&lt;!channel&gt; [click](https://evil.example) &amp; co" in slack["text"]
    teams = json.dumps(teams_payload(post))
    assert "](https://evil" not in teams and "[click] (https://evil.example)" in teams


# --------------------------------------------------------------------------------------------
# Channel recipients in the recipients file
# --------------------------------------------------------------------------------------------


def write(path: Path, *entries: dict, **top) -> Path:
    path.write_text(yaml.safe_dump({"recipients": list(entries), **top}, sort_keys=False))
    return path


def test_a_webhook_url_comes_from_the_environment_and_stays_secret(tmp_path, monkeypatch):
    url = f"https://hooks.slack.com/services/T9/B9/{SECRET}"
    monkeypatch.setenv("KPI_SLACK_SALES", url)
    path = write(
        tmp_path / "r.yaml",
        {"slack": "$KPI_SLACK_SALES", "name": "#sales", "role": "executive"},
        {
            "teams": "https://prod.westeurope.logic.azure.com/workflows/x?sig=abc123",
            "role": "executive",
        },
    )
    people = load_recipients(path)
    slack, teams = people.channels
    assert (slack.kind, slack.url, slack.label, slack.key) == (
        "slack",
        url,
        "slack #sales",
        "slack:#sales",
    )
    assert (
        teams.label == "teams channel 2"
        and teams.key.startswith("teams:")
        and "sig" not in teams.key
    )
    assert SECRET not in repr(people) and "abc123" not in repr(people)
    assert redact(f"POST {url} failed") == "POST *** failed"
    assert list(people) == []  # iterating gives the people; channels are apart


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"slack": "$KPI_NOT_SET", "role": "executive"}, "environment variable KPI_NOT_SET"),
        (
            {"slack": f"http://hooks.example.com/{SECRET}", "role": "executive"},
            "not an https:// URL",
        ),
        (
            {"teams": f"https://x.example/{SECRET}", "role": "executive", "to": "x"},
            "unknown keys ['to']",
        ),
        (
            {
                "slack": f"https://x.example/{SECRET}",
                "teams": "https://y.example/",
                "role": "executive",
            },
            "one of",
        ),
        ({"slack": f"https://x.example/{SECRET}", "role": "cfo"}, "role 'cfo'"),
        ({"slack": f"https://x.example/{SECRET}", "role": "rep"}, "a rep needs 'rep_id:'"),
    ],
)
def test_a_bad_channel_entry_is_an_error_naming_it_but_never_its_url(
    tmp_path, monkeypatch, entry, message
):
    monkeypatch.delenv("KPI_NOT_SET", raising=False)
    path = write(tmp_path / "r.yaml", entry)
    with pytest.raises(ParamsError) as err:
        load_recipients(path)
    text = str(err.value)
    assert message in text and str(path) in text and "recipient 1" in text
    assert SECRET not in text


def test_two_channels_may_not_share_a_name_or_a_webhook(tmp_path):
    one = {
        "slack": f"https://hooks.slack.com/services/A/{SECRET}",
        "name": "#a",
        "role": "executive",
    }
    with pytest.raises(ParamsError, match="same name as recipient 1"):
        load_recipients(
            write(tmp_path / "r.yaml", one, {**one, "slack": "https://hooks.slack.com/x"})
        )
    with pytest.raises(ParamsError, match="same webhook as recipient 1") as err:
        load_recipients(write(tmp_path / "r.yaml", one, {**one, "name": "#b"}))
    assert SECRET not in str(err.value)


# --------------------------------------------------------------------------------------------
# Posting a batch to a stand-in webhook server
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    return build_batch(tmp_path_factory.mktemp("template"))


@pytest.fixture
def out(template, tmp_path) -> Path:
    copy_batch(template, tmp_path / "reports")
    return tmp_path / "reports"


@pytest.fixture
def server():
    with webhook_server() as s:
        yield s


def channel_recipients(path: Path, server, **top) -> Path:
    """An executive Slack channel (company + a team), a Teams channel of the na-ent manager
    (the team + one rep) and a rep's Slack channel (R007, of another team)."""
    return write(
        path,
        {
            "slack": server.url(EXEC),
            "name": "#leadership",
            "role": "executive",
            "scopes": ["all", "na-ent"],
        },
        {
            "teams": server.url(MANAGER),
            "name": "NA Enterprise",
            "role": "manager",
            "team_id": "na-ent",
            "scopes": ["na-ent", "R001"],
        },
        {"slack": server.url(REP), "name": "@nadia", "role": "rep", "rep_id": "R007"},
        report_url="https://reports.example.com/sales/",
        **top,
    )


def send(out: Path, recipients: Path, lines: list, waits: list, **kw):
    return send_batch(
        Period.parse("2026-10"),
        out=out,
        recipients=recipients,
        retry=FAST,
        log=lines.append,
        sleep=waits.append,
        **kw,
    )


@pytest.mark.slow
def test_each_channel_gets_one_post_per_scope_it_may_see_within_the_documented_limits(
    out, server, tmp_path
):
    from kpi_lib.metrics.batch import Batch

    path = channel_recipients(tmp_path / "r.yaml", server)
    lines, waits = [], []
    result = send(out, path, lines, waits)
    assert not result.failed and result.sent == [] and waits == []
    assert sorted(result.posted) == sorted(
        [
            "slack #leadership all",
            "slack #leadership na-ent",
            "teams NA Enterprise na-ent",
            "teams NA Enterprise R001",
            "slack @nadia R007",
        ]
    )
    for body in server.posts(EXEC) + server.posts(REP):
        assert_slack_message(body)
    for body in server.posts(MANAGER):
        assert_teams_message(body)
    assert [len(server.posts(p)) for p in (EXEC, MANAGER, REP)] == [2, 2, 1]

    batch = Batch.load(out / "2026-10" / "_data")
    figures = Figures(batch)
    company, team = server.posts(EXEC)
    assert company["blocks"][0]["text"]["text"] == "Sales KPIs October 2026 — Company"
    first = figures.explain.sentences("company", "all")[0]
    assert first.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in payload_text(
        company
    )
    assert "Revenue" in payload_text(company) and "vs Sep 26" in payload_text(company)
    assert "North America Enterprise" in team["blocks"][0]["text"]["text"]
    card = server.posts(MANAGER)[0]["attachments"][0]["content"]
    assert (
        card["actions"][0]["url"] == "https://reports.example.com/sales/2026-10/manager/na-ent.html"
    )
    assert (
        card["body"][1]["type"] == "FactSet"
        and card["body"][1]["facts"][0]["title"] == get_kpi("revenue").label
    )

    # the rep's channel: the rep's own report, and no other rep's or team's name
    (post,) = server.posts(REP)
    text = payload_text(post)
    reps = batch.reps.set_index("rep_id")["rep_name"]
    assert reps["R007"] in post["blocks"][0]["text"]["text"]
    own_team = batch.reps.set_index("rep_id").loc["R007", "team_id"]
    others = [n for r, n in reps.items() if r != "R007"] + [
        n
        for t, n in zip(batch.teams["team_id"], batch.teams["team_name"], strict=True)
        if t != own_team
    ]
    assert not [n for n in others if n in text]

    ledger = Ledger(out / "2026-10" / "outbox" / "ledger.jsonl")
    assert len(ledger.entries) == 5
    assert {e["channel"] for e in ledger.entries.values()} == {
        "slack #leadership",
        "teams NA Enterprise",
        "slack @nadia",
    }


@pytest.mark.slow
def test_a_rerun_posts_nothing_already_in_the_ledger(out, server, tmp_path):
    path = channel_recipients(tmp_path / "r.yaml", server)
    send(out, path, [], [])
    before = len(server.requests)
    again = send(out, path, [], [])
    assert again.posted == [] and len(again.already_posted) == 5
    assert len(server.requests) == before == 5


@pytest.mark.slow
def test_a_429_is_retried_after_the_wait_the_service_asks_for(out, server, tmp_path):
    server.script[EXEC] = [(429, {"Retry-After": "7"}, "rate_limited")]
    server.script[MANAGER] = [
        (503, {}, "busy"),
        (200, {}, "Microsoft Teams endpoint returned HTTP error 429"),
    ]
    lines, waits = [], []
    result = send(out, channel_recipients(tmp_path / "r.yaml", server), lines, waits)
    assert not result.failed and len(result.posted) == 5
    assert waits == [7.0, 0.5, 1.0]  # Retry-After; then backoff for the 503 and the body's 429
    assert len(server.posts(EXEC)) == 3 and len(server.posts(MANAGER)) == 4
    assert any("retry slack #leadership all in 7 s" in line for line in lines)


@pytest.mark.slow
def test_a_refused_post_fails_and_the_webhook_url_is_written_and_said_nowhere(
    out, server, tmp_path, capsys
):
    server.script[REP] = [(404, {}, "no_service")]
    server.script[MANAGER] = [(500, {}, "oops")] * 3  # retries run out on the first scope
    path = channel_recipients(tmp_path / "r.yaml", server, operators=["ops@example.com"])
    args = ["send", "--period", "2026-10", "--out", str(out), "--recipients", str(path)]
    code = cli.main([*args, "--retries", "3", "--retry-delay", "0.01"])
    err = capsys.readouterr().err
    assert code == 1
    assert "FAILED slack @nadia R007: HTTP 404 Not Found: no_service" in err
    assert "FAILED teams NA Enterprise na-ent: HTTP 500" in err and "(after 3 attempts)" in err
    assert "teams NA Enterprise R001: not attempted: teams NA Enterprise unavailable" in err
    assert len(server.posts(MANAGER)) == 3  # R001 was not tried after na-ent ran out
    notices = list((out / "2026-10" / "outbox" / "operators").glob("*.eml"))
    assert len(notices) == 1 and "not delivered to slack @nadia R007" in notices[0].read_text()
    for where in [err, *(p.read_text(errors="replace") for p in out.rglob("*") if p.is_file())]:
        assert SECRET not in where and f"127.0.0.1:{server.port}" not in where


@pytest.mark.slow
def test_a_scope_whose_report_failed_is_held_and_the_channels_other_scopes_posted(
    out, server, tmp_path
):
    (out / "2026-10" / "rep" / "R001.html").unlink()  # R001's report did not render
    result = send(out, channel_recipients(tmp_path / "r.yaml", server), [], [])
    assert "teams NA Enterprise na-ent" in result.posted
    assert (
        "teams NA Enterprise R001",
        "not posted: report rep/R001 did not render (report missing)",
    ) in result.failed
    assert len(server.posts(MANAGER)) == 1
    ledger = Ledger(out / "2026-10" / "outbox" / "ledger.jsonl")
    held = ledger.held[Ledger.post_key("teams:NA Enterprise", "2026-10/final", "R001")]
    assert "R001 did not render" in held["reason"]


@pytest.mark.slow
def test_a_post_that_would_name_someone_outside_the_channels_scope_is_not_sent(
    out, server, tmp_path, monkeypatch
):
    real = channels.scope_post

    def leaky(figures, report, report_url=None):
        post = real(figures, report, report_url)
        return Post(
            post.title, post.tiles, [*post.sentences, "Ahead of EMEA Enterprise."], post.footer
        )

    monkeypatch.setattr(channels, "scope_post", leaky)
    result = send(out, channel_recipients(tmp_path / "r.yaml", server), [], [])
    leaks = dict(result.failed)
    assert "EMEA Enterprise" in leaks["slack @nadia R007"]
    assert leaks["teams NA Enterprise na-ent"].startswith("scope leak")
    assert server.posts(REP) == [] and server.posts(MANAGER) == []
    assert len(server.posts(EXEC)) == 2  # the executives may see every name


@pytest.mark.slow
def test_no_channels_sends_email_only(out, server, tmp_path):
    result = send(out, channel_recipients(tmp_path / "r.yaml", server), [], [], channels=False)
    assert result.posted == [] and server.requests == []


def test_a_reps_channel_may_not_be_granted_another_scope(template, tmp_path):
    from kpi_lib.metrics.batch import Batch

    batch = Batch.load(template / "_data")
    entry = {"slack": f"https://hooks.slack.com/services/{SECRET}", "name": "@nadia"}
    rep = {**entry, "role": "rep", "rep_id": "R007", "scopes": ["R007", "R001"]}
    with pytest.raises(ParamsError, match=r"recipient 1 \(slack @nadia\): a rep may only see"):
        load_recipients(write(tmp_path / "r.yaml", rep), batch)
    manager = {**entry, "role": "manager", "team_id": "na-mm", "scopes": ["na-mm", "R001"]}
    with pytest.raises(ParamsError, match="rep 'R001' belongs to team 'na-ent'"):
        load_recipients(write(tmp_path / "r.yaml", manager), batch)
