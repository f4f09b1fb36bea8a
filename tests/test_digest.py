"""The email digest: MIME structure, Content-IDs, size, escaping and scope isolation.

Built on the demo batch of 2026-10 with small stand-in reports (``tests/_delivery.py``); the
PDF attachments are printed by the real headless Chromium.
"""

from __future__ import annotations

import dataclasses
import io
import re
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from _delivery import GRANTED, build_batch, write_recipients
from PIL import Image

from kpi_lib.metrics.batch import Batch
from kpi_lib.publish.digest import (
    MAX_BODY_BYTES,
    DigestError,
    Figures,
    PdfPrinter,
    build_digest,
    locate_reports,
)
from kpi_lib.publish.recipients import Recipient, load_recipients


@pytest.fixture(scope="module")
def period_dir(tmp_path_factory) -> Path:
    return build_batch(tmp_path_factory.mktemp("digest"))


@pytest.fixture(scope="module")
def batch(period_dir) -> Batch:
    return Batch.load(period_dir / "_data")


@pytest.fixture(scope="module")
def pdf():
    with PdfPrinter() as printer:
        yield printer


@pytest.fixture(scope="module")
def digests(period_dir, batch, pdf, tmp_path_factory) -> dict:
    """``{email: parsed message}`` for the four test recipients, as sent over the wire."""
    path = write_recipients(tmp_path_factory.mktemp("r") / "recipients.yaml")
    people = load_recipients(path, batch)
    out = {}
    for person in people:
        msg = build_digest(person, batch, period_dir, pdf=pdf, sender=people.sender)
        out[person.email] = message_from_bytes(msg.as_bytes(), policy=policy.default)
    return out


def html_body(msg) -> str:
    return msg.get_body(("html",)).get_content()


def attachments(msg) -> dict[str, bytes]:
    return {p.get_filename(): p.get_content() for p in msg.iter_attachments()}


def test_the_digest_nests_alternative_in_related_in_mixed(digests):
    msg = digests["nae@example.com"]
    assert msg.get_content_type() == "multipart/mixed"
    top = list(msg.iter_parts())
    assert top[0].get_content_type() == "multipart/related"
    related = list(top[0].iter_parts())
    assert related[0].get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in related[0].iter_parts()] == ["text/plain", "text/html"]
    assert {p.get_content_type() for p in related[1:]} == {"image/png"}
    assert 2 <= len(related) - 1 <= 3
    assert [p.get_content_type() for p in top[1:]] == [
        "text/html",
        "application/pdf",
        "text/html",
        "application/pdf",
    ]


def test_every_cid_in_the_html_has_its_image_part_and_every_image_is_referenced(digests):
    for msg in digests.values():
        cids = set(re.findall(r'src="cid:([^"]+)"', html_body(msg)))
        parts = {
            p["Content-ID"].strip("<>"): p
            for p in msg.walk()
            if p.get_content_type() == "image/png"
        }
        assert cids == set(parts) and len(cids) >= 2
        for part in parts.values():
            assert part.get_content_disposition() == "inline"


def test_charts_are_small_600_by_260_pngs(digests):
    for msg in digests.values():
        for part in msg.walk():
            if part.get_content_type() == "image/png":
                data = part.get_content()
                assert len(data) < 30_000
                assert Image.open(io.BytesIO(data)).size == (600, 260)


def test_the_html_body_is_small_inline_styled_and_free_of_scripts_and_data_images(digests):
    for msg in digests.values():
        body = html_body(msg)
        assert len(body.encode()) < MAX_BODY_BYTES
        lowered = body.lower()
        for banned in ("<script", "data:", "<style", "javascript:", "<link"):
            assert banned not in lowered
        assert 'width="600"' in body and "max-width:600px" in body


def test_subject_names_the_period_and_the_scope(digests):
    assert digests["ceo@example.com"]["Subject"] == "Sales KPIs October 2026 — Company"
    assert digests["emm@example.com"]["Subject"] == "Sales KPIs October 2026 — EMEA Mid-Market"
    assert digests["nae@example.com"]["Subject"] == (
        "Sales KPIs October 2026 — North America Enterprise + 1 more"
    )


def test_tiles_show_value_target_status_and_change_from_the_cube(digests, batch):
    body = html_body(digests["ceo@example.com"])
    figures = Figures(batch)
    revenue = figures.get("revenue", "company", "all")
    target = figures.get("revenue", "company", "all", field="target")
    from kpi_lib.report.theme import format_value

    tile = re.search(r'data-kpi="revenue".*?</table></td>', body, re.S).group(0)
    assert "Revenue (bookings)" in tile
    assert format_value(revenue, "currency") in tile
    assert f"of {format_value(target, 'currency')} target" in tile
    assert "vs Sep 26" in tile
    assert body.count('class="tile"') == 11  # the headline KPIs, all defined for the company
    assert "Revenue (bookings): " in digests["ceo@example.com"].get_body(("plain",)).get_content()


def test_each_recipient_gets_their_scopes_and_nothing_else(digests, batch):
    names = {s.scope_id: s.name for s in batch.scopes()}
    for email, msg in digests.items():
        granted = GRANTED[email]
        files = attachments(msg)
        scopes_in_files = {
            re.fullmatch(
                r"sales-kpis-2026-10-(?:executive|manager|rep)-(.+)"
                r"\.(?:html|pdf)",
                f,
            )[1]
            for f in files
        }
        assert scopes_in_files == granted, email
        for name, data in files.items():
            if name.endswith(".html"):
                assert set(re.findall(r'data-scope="([^"]+)"', data)) <= granted
        assert set(msg["X-KPI-Scopes"].split()) == granted
        text = html_body(msg) + msg.get_body(("plain",)).get_content() + msg["Subject"]
        others = [sid for sid in names if sid not in granted and sid != "all"]
        if "all" not in granted:
            for sid in others:
                team_of_granted = batch.reps.set_index("rep_id")["team_id"].to_dict()
                if sid in batch.teams["team_id"].values:
                    assert names[sid] not in text, (email, sid)
                elif team_of_granted.get(sid) not in granted:
                    assert names[sid] not in text and sid not in text, (email, sid)


def test_a_rep_digest_names_no_other_rep(digests, batch):
    text = html_body(digests["r001@example.com"]) + str(digests["r001@example.com"])
    others = batch.reps[batch.reps["rep_id"] != "R001"]
    for rep_id, name in zip(others["rep_id"], others["rep_name"], strict=True):
        assert name not in text and f"-{rep_id}." not in text


def test_the_html_attachment_is_the_report_and_the_pdf_is_a_pdf(digests, period_dir):
    files = attachments(digests["emm@example.com"])
    assert files["sales-kpis-2026-10-manager-emea-mm.html"] == (
        period_dir / "manager" / "emea-mm.html"
    ).read_text(encoding="utf-8")
    assert files["sales-kpis-2026-10-manager-emea-mm.pdf"].startswith(b"%PDF")


def test_crm_strings_are_escaped_in_the_body_and_kept_out_of_header_lines(period_dir, batch, pdf):
    evil = "<script>alert(1)</script> & <b>Co</b>\r\nBcc: spy@example.com"
    teams = batch.teams.copy()
    teams.loc[teams["team_id"] == "emea-mm", "team_name"] = evil
    hacked = dataclasses.replace(batch, teams=teams)
    person = Recipient(
        "m@example.com", "Jonas\nBcc: spy@example.com", "manager", ("emea-mm",), team_id="emea-mm"
    )
    reports = locate_reports(period_dir, hacked)
    msg = build_digest(
        person, hacked, period_dir, pdf=pdf, sender="K <k@example.com>", reports=reports
    )
    raw = msg.as_bytes()
    body = msg.get_body(("html",)).get_content()
    assert "<script>" not in body and "&lt;script&gt;alert(1)&lt;/script&gt; &amp;" in body
    headers = raw.split(b"\n\n", 1)[0]
    assert b"\nBcc:" not in headers and b"\r" not in headers
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["Bcc"] is None
    assert "\n" not in parsed["Subject"] and "Bcc: spy@example.com" in parsed["Subject"]


def test_a_failed_report_fails_that_recipients_digest(period_dir, batch, pdf, tmp_path):
    import json
    import shutil

    copy = tmp_path / "2026-10"
    shutil.copytree(period_dir, copy)
    (copy / "manifest.json").write_text(
        json.dumps(
            {
                "reports": [
                    {
                        "role": "rep",
                        "scope": "rep",
                        "scope_id": "R001",
                        "scope_name": "Javier Dubois",
                        "html": "rep/R001.html",
                        "status": "failed",
                        "error": "NameError: x",
                    }
                ]
            }
        )
    )
    person = Recipient("r@example.com", "J", "rep", ("R001",), rep_id="R001")
    with pytest.raises(DigestError, match="report rep/R001 did not render"):
        build_digest(person, batch, copy, pdf=pdf, sender="k@example.com")


def test_a_rep_without_a_report_this_period_gets_no_digest(period_dir, batch, pdf):
    inactive = batch.reps.loc[~batch.reps["is_active"], "rep_id"].iloc[0]
    person = Recipient("gone@example.com", "Gone", "rep", (inactive,), rep_id=inactive)
    assert build_digest(person, batch, period_dir, pdf=pdf, sender="k@example.com") is None


@pytest.mark.slow
def test_a_month_to_date_digest_compares_with_the_same_days_and_projects(tmp_path, pdf):
    period_dir = build_batch(tmp_path, period="2026-10", as_of="2026-10-14")
    batch = Batch.load(period_dir / "_data")
    person = Recipient("ceo@example.com", "Dana", "executive", ("all",))
    msg = build_digest(person, batch, period_dir, pdf=pdf, sender="k@example.com")
    assert msg["Subject"] == "Sales KPIs October 2026 to date (1-14 Oct) — Company"
    assert msg["X-KPI-Batch"] == "2026-10/mtd-2026-10-14"
    body = msg.get_body(("html",)).get_content()
    tile = re.search(r'data-kpi="revenue".*?</table></td>', body, re.S).group(0)
    assert "vs 1-14 Sep" in tile and "projected $" in tile and "by month end" in tile
    assert "same days of the previous month" in body


@pytest.mark.slow
def test_the_digest_at_phone_width_shows_the_tiles_and_the_images(digests, pdf, tmp_path):
    msg = digests["nae@example.com"]
    body = html_body(msg)
    for part in msg.walk():  # serve the CID images as files beside the page
        if part.get_content_type() == "image/png":
            name = part.get_filename()
            (tmp_path / name).write_bytes(part.get_content())
            body = body.replace(f"cid:{part['Content-ID'].strip('<>')}", name)
    page_path = tmp_path / "digest.html"
    page_path.write_text(body, encoding="utf-8")
    page = pdf.browser().new_page(viewport={"width": 390, "height": 844})  # headless Chromium
    try:
        page.goto(page_path.as_uri())
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        tiles = page.locator("td.tile")
        assert tiles.count() == 11 + 10  # the team's headline KPIs, then the rep's (no CAC)
        for i in range(tiles.count()):
            box = tiles.nth(i).bounding_box()
            assert box["width"] > 120 and box["x"] + box["width"] <= 390
            assert tiles.nth(i).inner_text().strip()
        images = page.locator("img")
        assert images.count() == 3
        for i in range(3):
            loaded = images.nth(i).evaluate("img => [img.complete, img.naturalWidth, img.width]")
            assert loaded[0] and loaded[1] == 600 and 300 <= loaded[2] <= 390
        page.screenshot(path=str(tmp_path / "digest-390.png"), full_page=True)
    finally:
        page.close()
