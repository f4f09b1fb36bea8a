"""Deals at risk: each with its reasons and the next step they imply, by the reader's scope.

The batch lists every open deal at risk with the codes of its reasons
(``kpi_lib.metrics.risks``); this section words them for the reader: a rep sees their deals
with what to do next (update the close date, log the activity), a manager the team's list by
owner and the share of next month's expected amount that is at risk, an executive the amount
at risk per team. ``risk_lines`` gives the digest the same words for a recipient's top deals.

Example
-------
>>> reason_phrases({"reasons": "past_expected_close;no_recent_activity", "stage": "Demo",
...     "expected_close_at": pd.Timestamp("2026-11-12"), "days_quiet": 45.0,
...     "report_day": pd.Timestamp("2026-11-30")})
['18 days past its expected close date', 'no activity logged in 45 days']
"""

from __future__ import annotations

import math

import pandas as pd

from kpi_lib.metrics import deals
from kpi_lib.metrics.risks import REASONS, SEPARATOR
from kpi_lib.report import theme
from kpi_lib.report.html import Html, bar_html, card, esc, html_table
from kpi_lib.report.theme import COLORS, format_value, is_missing

NEXT_STEPS = {
    "past_expected_close": "update the close date, or close it out",
    "no_recent_activity": "log the next call or meeting",
    "stuck_in_stage": "agree the step that moves it on",
    "close_date_pushed": "confirm the timeline with the buyer",
    "amount_reduced": "confirm scope and budget",
}
"""The next step each reason implies, in the order a rep would take them."""
REP_LIMIT = 15
"""A rep's list shows at most this many deals (largest first)."""
OWNER_LIMIT = 5
"""A manager's list shows at most this many deals per owner (largest first), then how many more."""


def codes(row) -> list[str]:
    """The reason codes of one ``risks`` row, in ``REASONS`` order."""
    given = str(row["reasons"] or "").split(SEPARATOR)
    return [c for c in REASONS if c in given]


def _days(x) -> str:
    return f"{x:,.0f} day{'s' if round(x) != 1 else ''}"


def reason_phrases(row) -> list[str]:
    """Each reason of a ``risks`` row in words, with its figure (``'no activity logged in 45
    days'``); the row's detail columns give the figures, a missing one leaves it out."""
    out = []
    for code in codes(row):
        if code == "past_expected_close":
            when, at = row.get("expected_close_at"), row.get("report_day")
            if is_missing(when):
                out.append(REASONS[code])
            elif is_missing(at):
                out.append(f"expected to close {pd.Timestamp(when).strftime('%d %b %Y')}")
            else:
                late = (pd.Timestamp(at).normalize() - pd.Timestamp(when).normalize()).days
                out.append(
                    f"{_days(late)} past its expected close date"
                    if late > 0
                    else "expected to close on the report date, still open"
                )
        elif code == "no_recent_activity":
            quiet = row.get("days_quiet")
            out.append(
                f"no activity logged in {_days(quiet)}" if not is_missing(quiet) else REASONS[code]
            )
        elif code == "stuck_in_stage":
            days, limit = row.get("days_in_stage"), row.get("stage_limit_days")
            if is_missing(days) or is_missing(limit):
                out.append(REASONS[code])
            else:
                same = round(days) <= round(limit)  # 18.4 days against 17.8: say which is longer
                shown = (
                    (f"{days:.1f} days", f"{limit:.1f} days")
                    if same
                    else (_days(days), _days(limit))
                )
                out.append(f"{shown[0]} in {row['stage']}; won deals take up to {shown[1]}")
        elif code == "close_date_pushed":
            pushes = row.get("pushes")
            out.append(
                f"close date pushed {pushes:,.0f} times"
                if not is_missing(pushes)
                else REASONS[code]
            )
        elif code == "amount_reduced":
            was = row.get("amount_was")
            out.append(
                f"amount cut from {format_value(was, 'currency')}"
                if not is_missing(was)
                else REASONS[code]
            )
    return out


def next_step(row) -> str:
    """What the reasons of a ``risks`` row ask the owner to do, first step first."""
    steps = [NEXT_STEPS[c] for c in codes(row)]
    text = "; ".join(dict.fromkeys(steps))
    return text[:1].upper() + text[1:]


def scope_risks(risks: pd.DataFrame | None, scope: str, scope_id: str) -> pd.DataFrame:
    """The rows of ``risks`` in a scope (company: all; team: its deals; rep: the owner's)."""
    if risks is None:
        return pd.DataFrame()
    if scope == "team":
        return risks[risks["team_id"].astype(str) == str(scope_id)]
    if scope == "rep":
        return risks[risks["owner_rep_id"].astype(str) == str(scope_id)]
    return risks


def with_report_day(risks: pd.DataFrame | None, batch) -> pd.DataFrame | None:
    """``risks`` with ``report_day``, the last day of the batch's snapshot, for "N days past"."""
    if risks is None:
        return None
    at = deals.snapshot_at(batch.period, batch.as_of) - pd.Timedelta(days=1)
    return risks.assign(report_day=at)


def deal_names(batch) -> dict[str, str]:
    """``opportunity_id -> account name`` from the batch's open deals (empty names left out)."""
    table = getattr(batch, "open_deals", None)
    if table is None:
        return {}
    names = table.set_index("opportunity_id")["account_name"].astype(str)
    return {k: v for k, v in names.items() if v}


def risk_lines(batch, scope: str, scope_id: str, limit: int = 3) -> list[str]:
    """A recipient's top deals at risk in plain text, largest first: the digest's lines.

    Example: ``'Acme Corp ($120K, Proposal): expected to close 12 Nov 2026; no activity
    logged in 45 days. Next: update the close date, or close it out; log the next call or
    meeting.'``; with more, a last line says how many more and their amount.
    """
    rows = scope_risks(with_report_day(getattr(batch, "risks", None), batch), scope, scope_id)
    if rows.empty:
        return []
    names = deal_names(batch)
    out = []
    for _, r in rows.head(limit).iterrows():
        name = names.get(str(r["opportunity_id"]), str(r["opportunity_id"]))
        out.append(
            f"{name} ({format_value(r['amount'], 'currency')}, {r['stage']}): "
            f"{'; '.join(reason_phrases(r))}. Next: {next_step(r).lower()}."
        )
    if len(rows) > limit:
        rest = rows.iloc[limit:]
        out.append(
            f"{len(rest):,} more at risk ({format_value(rest['amount'].sum(), 'currency')}); "
            "see the report."
        )
    return out


class RiskSections:
    """The deals-at-risk section of ``Report`` (a mixin: reads ``self.ctx.batch`` and co.)."""

    def deals_at_risk(self) -> Html:
        """Deals at risk for this report's reader: the executive's amount per team, the
        manager's list by owner with the share of next month at risk, the rep's own deals
        with the next step."""
        batch = getattr(self.ctx, "batch", None)
        risks = getattr(batch, "risks", None)
        if risks is None:
            return self._block(
                card(
                    "Deals at risk",
                    "",
                    note="This batch carries no deals at risk (rendered by an older version: "
                    "render again).",
                )
            )
        if self.scope == "company":
            return self._risks_by_team(risks)
        risks = with_report_day(risks, batch)
        return self._risk_list(scope_risks(risks, self.scope, self.scope_id))

    def _rules_footer(self) -> str:
        return f'<p class="kr-note" style="margin:10px 0 0">{self._risk_rules_note()}</p>'

    # -- notes shared by every view ------------------------------------------------------------

    def _risk_rules_note(self) -> str:
        """Which rules were checked, with the thresholds, and which could not be and why."""
        batch = self.ctx.batch
        limits = (batch.settings or {}).get("risks", {})
        quiet = limits.get("quiet_days", 30)
        share = limits.get("stage_percentile", 0.9)
        pushes = limits.get("close_date_pushes", 2)
        rules = {
            "past_expected_close": "is past its expected close date",
            "no_recent_activity": f"has had no activity logged on it for {quiet} days or more",
            "stuck_in_stage": (
                f"has been in its stage longer than {share * 100:.0f}% of the deals won in the "
                "last 12 months took there"
            ),
            "close_date_pushed": f"has had its close date pushed {pushes} times or more",
            "amount_reduced": "has had its amount cut since a snapshot",
        }
        short = {
            "past_expected_close": "overdue close dates",
            "no_recent_activity": "activity",
            "stuck_in_stage": "time in stage",
            "close_date_pushed": "pushed close dates",
            "amount_reduced": "cut amounts",
        }
        off = getattr(batch, "risk_unavailable", {}) or {}
        checked = [text for code, text in rules.items() if code not in off]
        if not checked:
            text = "No rule could be checked."
        elif len(checked) == 1:
            text = f"A deal open at the end of the period is at risk when it {checked[0]}."
        else:
            text = (
                "A deal open at the end of the period is at risk when it "
                + "; ".join(checked[:-1])
                + "; or "
                + checked[-1]
                + " (thresholds in the org's kpis.yaml)."
            )
        by_reason: dict[str, list[str]] = {}
        for code, why in off.items():
            by_reason.setdefault(why, []).append(short[code])
        for why, what in by_reason.items():
            text += f" Not checked: {' and '.join(what)}, because {why}."
        return esc(text)

    # -- the executive: amount at risk per team --------------------------------------------------

    def _risks_by_team(self, risks: pd.DataFrame) -> Html:
        teams = self._teams()
        open_now = self.ctx.open_deals
        rows = []
        total_open = float(open_now["amount"].sum())
        for t in teams.itertuples(index=False):
            mine = risks[risks["team_id"].astype(str) == t.team_id]
            open_amount = float(
                open_now.loc[open_now["team_id"].astype(str) == t.team_id, "amount"].sum()
            )
            at_risk = float(mine["amount"].sum())
            share = at_risk / open_amount if open_amount else math.nan
            rows.append((at_risk, t.team_name, len(mine), share))
        rows.sort(key=lambda r: (-r[0], r[1]))
        top = max((r[0] for r in rows), default=0) or 1
        body = [
            [
                esc(name),
                f"{n:,}",
                bar_html(amount / top, COLORS["bad"]) + esc(format_value(amount, "currency")),
                theme.format_percent(share),
            ]
            for amount, name, n, share in rows
        ]
        at_risk_total = float(risks["amount"].sum())
        total = [
            "Company",
            f"{len(risks):,}",
            esc(format_value(at_risk_total, "currency")),
            theme.format_percent(at_risk_total / total_open if total_open else math.nan),
        ]
        table = html_table(
            body,
            ["Team", "Deals", "At risk", "Of open"],
            numeric=[1, 2, 3],
            total=total,
        )
        counts = _reason_counts(risks)
        quiet = (self.ctx.batch.settings or {}).get("risks", {}).get("quiet_days", 30)
        plural = {
            "past_expected_close": "are past their expected close date",
            "no_recent_activity": f"have had no activity logged in {quiet} days",
            "stuck_in_stage": "have sat in their stage longer than won deals take",
            "close_date_pushed": "have had their close date pushed repeatedly",
            "amount_reduced": "have had their amount cut",
        }
        parts = [f"<b>{n:,}</b> {plural[c]}" for c, n in counts.items()]
        mix = (
            '<p style="margin:8px 0 0">Of these deals, '
            + (", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0])
            + " (a deal can have several reasons).</p>"
            if parts
            else ""
        )
        if risks.empty:
            table = "<p>No open deal is at risk on the rules below.</p>"
        return self._block(
            card(
                "Deals at risk by team",
                table + mix + self._rules_footer(),
                note="Open deals at risk at the end of the period, and their share of each "
                "team's open pipeline.",
            )
        )

    # -- a team's or a rep's list ----------------------------------------------------------------

    def _risk_list(self, mine: pd.DataFrame) -> Html:
        names = deal_names(self.ctx.batch)
        by_owner = self.scope == "team"
        everyone = getattr(self.ctx.batch, "reps", None)  # reps who left still own deals
        everyone = self._reps() if everyone is None else everyone.astype({"rep_id": str})
        reps = everyone.drop_duplicates("rep_id").set_index("rep_id")["rep_name"]
        head = self._expected_share(mine) if by_owner else ""
        if mine.empty:
            body = head + "<p>No open deal is at risk on the rules below.</p>"
            return self._block(card("Deals at risk", body + self._rules_footer()))
        shown = mine
        if by_owner:
            owner_total = mine.groupby("owner_rep_id")["amount"].sum()
            shown = mine.assign(
                _owner_total=mine["owner_rep_id"].map(owner_total),
                _owner=mine["owner_rep_id"].map(reps).fillna(mine["owner_rep_id"]),
            ).sort_values(
                ["_owner_total", "_owner", "amount"],
                ascending=[False, True, False],
                kind="stable",
            )
        hidden = shown.iloc[0:0]
        if by_owner:
            rank = shown.groupby("owner_rep_id", sort=False).cumcount()
            hidden = shown[rank >= OWNER_LIMIT]
            shown = shown[rank < OWNER_LIMIT]
        rows = []
        owner = None
        for _, r in shown.head(REP_LIMIT if not by_owner else len(shown)).iterrows():
            if by_owner and r["owner_rep_id"] != owner:
                if owner is not None:
                    rows += _more_row(hidden, owner)
                owner = r["owner_rep_id"]
                theirs = mine[mine["owner_rep_id"] == owner]
                rows.append(
                    [
                        f'<span class="kr-owner">{esc(reps.get(owner, owner))}</span>',
                        "",
                        f"<b>{esc(format_value(theirs['amount'].sum(), 'currency'))}</b>",
                        "",
                        f'<span class="kr-sub">{len(theirs)} deal'
                        f"{'s' if len(theirs) != 1 else ''}</span>",
                    ]
                )
            deal = str(r["opportunity_id"])
            name = names.get(deal, deal)
            close = r["expected_close_at"]
            rows.append(
                [
                    esc(name) + (f'<div class="kr-sub">{esc(deal)}</div>' if name != deal else ""),
                    esc(r["stage"]),
                    esc(format_value(r["amount"], "currency")),
                    esc(pd.Timestamp(close).strftime("%d %b %Y")) if not is_missing(close) else "",
                    '<div class="kr-why">'
                    + "<br>".join(esc(p) for p in reason_phrases(r))
                    + f'<div class="kr-next">Next: {esc(next_step(r).lower())}</div></div>',
                ]
            )
        if by_owner and owner is not None:
            rows += _more_row(hidden, owner)
        table = html_table(
            rows,
            ["Deal", "Stage", "Amount", "Expected close", "Why at risk, and the next step"],
            numeric=[2],
        )
        total = float(mine["amount"].sum())
        more = ""
        if not by_owner and len(mine) > REP_LIMIT:
            more = f" The {REP_LIMIT} largest are shown."
        elif by_owner and len(mine) > len(shown):
            more = f" Each owner's {OWNER_LIMIT} largest are shown."
        summary = (
            f'<p style="margin:4px 0 8px"><b>{len(mine):,} deal{"s" if len(mine) != 1 else ""}'
            f"</b> at risk, <b>{esc(format_value(total, 'currency'))}</b>"
            + (", by owner, largest first." if by_owner else ", largest first.")
            + f"{more}</p>"
        )
        return self._block(card("Deals at risk", head + summary + table + self._rules_footer()))

    def _expected_share(self, mine: pd.DataFrame) -> str:
        """The callout of a manager's list: the share of next month's expected amount at risk."""
        month = deals.snapshot_at(self.period, self.ctx.as_of)
        month = pd.Timestamp(month.year, month.month, 1)
        end = month + pd.DateOffset(months=1)
        open_now = self.scope_open_deals
        expected = open_now[
            (open_now["expected_close_at"] >= month) & (open_now["expected_close_at"] < end)
        ]
        name = theme.month_name(month.strftime("%Y-%m"))
        estimated = bool(expected["is_expected_close_estimated"].any()) if len(expected) else False
        total = float(expected["amount"].sum())
        at_risk = float(
            expected.loc[expected["opportunity_id"].isin(mine["opportunity_id"]), "amount"].sum()
        )
        if not total:
            text = f"No open deal is expected to close in {esc(name)}."
            status = "neutral"
        else:
            share = at_risk / total
            status = "bad" if share >= 0.5 else "warn" if share >= 0.25 else "good"
            text = (
                f'<span class="kr-big">{theme.format_percent(share)} at risk</span><br>'
                f"{esc(format_value(at_risk, 'currency'))} of the "
                f"{esc(format_value(total, 'currency'))} expected to close in {esc(name)} "
                "is in deals at risk."
                + (
                    " (Expected close dates are estimated from the average sales cycle: the "
                    "source has none.)"
                    if estimated
                    else ""
                )
            )
        return (
            f'<div class="kr-callout kr-{status}"><div class="kr-callout-title">'
            f"{esc(name)} at risk</div>{text}</div>"
        )


def _more_row(hidden: pd.DataFrame, owner: str) -> list[list[str]]:
    """The row under an owner's deals that says how many more of theirs are at risk."""
    rest = hidden[hidden["owner_rep_id"] == owner]
    if rest.empty:
        return []
    return [
        [
            f'<span class="kr-sub">and {len(rest):,} more</span>',
            "",
            f'<span class="kr-sub">{esc(format_value(rest["amount"].sum(), "currency"))}</span>',
            "",
            "",
        ]
    ]


def _reason_counts(risks: pd.DataFrame) -> dict[str, int]:
    """How many deals at risk each reason applies to, in ``REASONS`` order (none left out)."""
    given = risks["reasons"].astype(str).str.split(SEPARATOR).explode()
    counts = given.value_counts()
    return {c: int(counts[c]) for c in REASONS if c in counts}
