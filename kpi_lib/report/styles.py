"""The report stylesheet: one ``<style>`` block, emitted once per report by ``Report.header``."""

from __future__ import annotations

from kpi_lib.report import theme
from kpi_lib.report.theme import COLORS, STATUS_TEXT

CSS = f"""
.kr {{ font-family: {theme.FONT_STACK}; color: {COLORS["ink"]}; line-height: 1.45;
  box-sizing: border-box; max-width: 100%; }}
.kr *, .kr *::before, .kr *::after {{ box-sizing: border-box; }}
.kr-band {{ background: linear-gradient(120deg, {COLORS["band"]} 0%, {COLORS["band_accent"]} 100%);
  color: #fff; border-radius: 14px; padding: 22px 24px; margin: 4px 0 18px; }}
.kr-band .kr-eyebrow {{ text-transform: uppercase; letter-spacing: .08em; font-size: 12px;
  opacity: .8; margin: 0 0 4px; }}
.kr-band h1 {{ font-size: 28px; margin: 0; line-height: 1.2; color: #fff; border: 0; }}
.kr-band .kr-sub {{ margin-top: 6px; font-size: 15px; opacity: .9; }}
.kr-band .kr-meta {{ margin-top: 12px; display: flex; flex-wrap: wrap; gap: 8px; }}
.kr-partial {{ display: inline-block; margin-top: 10px; background: rgba(255,255,255,.92);
  color: {COLORS["ink"]}; border-radius: 8px; padding: 4px 10px; font-size: 13.5px;
  font-weight: 650; }}
.kr-tile-line.kr-todate {{ font-style: italic; }}
.kr-chip {{ display: inline-block; background: rgba(255,255,255,.14); border-radius: 999px;
  padding: 3px 10px; font-size: 12px; }}
.kr-section-title {{ font-size: 18px; font-weight: 700; margin: 26px 0 10px;
  color: {COLORS["ink"]}; }}
.kr-card {{ background: #fff; border: 1px solid {COLORS["grid"]}; border-radius: 12px;
  padding: 16px 18px; margin: 0 0 16px; box-shadow: 0 1px 2px rgba(16,24,40,.05);
  min-width: 0; }}
.kr-card h3 {{ font-size: 15px; margin: 0 0 4px; color: {COLORS["ink"]}; }}
.kr-card .kr-note {{ font-size: 13px; color: {COLORS["muted"]}; margin: 0 0 10px; }}
.kr-highlights {{ border-left: 4px solid {COLORS["primary"]}; }}
.kr-highlights ul {{ margin: 6px 0 0; padding-left: 20px; }}
.kr-highlights li {{ margin: 4px 0; font-size: 15px; }}
.kr-tiles {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 235px), 1fr));
  gap: 12px; margin: 0 0 18px; }}
.kr-tile {{ background: #fff; border: 1px solid {COLORS["grid"]}; border-top: 4px solid
  {COLORS["neutral"]}; border-radius: 12px; padding: 12px 14px 10px; min-width: 0;
  box-shadow: 0 1px 2px rgba(16,24,40,.05); display: flex; flex-direction: column; gap: 3px; }}
.kr-tile.kr-hero {{ grid-column: span 2;
  background: linear-gradient(180deg, #f4f9fd 0%, #fff 70%); }}
.kr-tile.kr-hero .kr-tile-value {{ font-size: 34px; }}
.kr-tile.kr-hero .kr-spark {{ height: 44px; }}
.kr-tile.kr-good {{ border-top-color: {COLORS["good"]}; }}
.kr-tile.kr-warn {{ border-top-color: {COLORS["warn"]}; }}
.kr-tile.kr-bad {{ border-top-color: {COLORS["bad"]}; }}
.kr-tile-label {{ font-size: 12px; text-transform: uppercase; letter-spacing: .04em;
  color: {COLORS["muted"]}; font-weight: 600; }}
.kr-tile-value {{ font-size: 26px; font-weight: 750; letter-spacing: -.01em; line-height: 1.15;
  font-variant-numeric: tabular-nums; }}
.kr-tile-value.kr-na {{ color: {COLORS["muted"]}; font-weight: 600; }}
.kr-tile-line {{ font-size: 12.5px; color: {COLORS["muted"]}; }}
.kr-tile-line b {{ font-weight: 650; }}
.kr-pill {{ display: inline-block; border-radius: 999px; padding: 1px 8px; font-weight: 650;
  font-size: 12px; }}
.kr-pill.kr-good {{ background: #e3f5ee; color: {STATUS_TEXT["good"]}; }}
.kr-pill.kr-warn {{ background: #fdf1dc; color: {STATUS_TEXT["warn"]}; }}
.kr-pill.kr-bad {{ background: #fbe6dc; color: {STATUS_TEXT["bad"]}; }}
.kr-pill.kr-neutral {{ background: #eef0f3; color: {STATUS_TEXT["neutral"]}; }}
.kr-delta {{ font-weight: 650; white-space: nowrap; }}
.kr-delta.kr-good {{ color: {STATUS_TEXT["good"]}; }}
.kr-delta.kr-bad {{ color: {STATUS_TEXT["bad"]}; }}
.kr-delta.kr-neutral {{ color: {STATUS_TEXT["neutral"]}; }}
.kr-delta.kr-nodata {{ font-weight: 400; font-style: italic; }}
.kr-noise {{ color: {COLORS["muted"]}; font-size: 0.92em; }}
.kr-tile-line.kr-interval {{ color: {COLORS["muted"]}; font-size: 0.85em; }}
.kr-spark {{ display: block; margin-top: auto; padding-top: 6px; width: 100%; height: 34px; }}
.kr-grid-2 {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 340px), 1fr));
  gap: 16px; }}
.kr-grid-2 > .kr-card {{ margin: 0; }}
.kr-grid-2.kr-outlook-row {{ grid-template-columns: repeat(auto-fit, minmax(min(100%, 420px), 1fr));
  margin: 0 0 16px; align-items: start; }}
.kr-table td .kr-why {{ white-space: normal; min-width: 220px; max-width: 420px; font-size: 13px; }}
.kr-table td .kr-next {{ color: {COLORS["primary"]}; font-weight: 600; margin-top: 2px; }}
.kr-owner {{ font-weight: 750; font-size: 14.5px; }}
.kr-table td .kr-track {{ white-space: normal; font-weight: 400; margin-top: 2px; }}
.kr-img {{ display: block; max-width: 100%; height: auto; margin: 4px auto 0; }}
.kr-table-wrap {{ overflow-x: auto; -webkit-overflow-scrolling: touch; max-width: 100%; }}
.kr-table {{ border-collapse: collapse; width: 100%; font-size: 13.5px;
  font-variant-numeric: tabular-nums; }}
.kr-table th {{ text-align: left; font-size: 11.5px; text-transform: uppercase;
  letter-spacing: .04em;
  color: {COLORS["muted"]}; font-weight: 650; padding: 8px 10px; border-bottom: 2px solid
  {COLORS["grid"]}; white-space: nowrap; background: #fafbfc; }}
.kr-table td {{ padding: 8px 10px; border-bottom: 1px solid #f0f1f3; white-space: nowrap; }}
.kr-table td.kr-num, .kr-table th.kr-num {{ text-align: right; }}
.kr-table td.kr-name {{ white-space: normal; min-width: 120px; font-weight: 600; }}
.kr-table tr.kr-total td {{ font-weight: 700; border-top: 2px solid {COLORS["grid"]};
  background: #fafbfc; }}
.kr-table .kr-sub {{ color: {COLORS["muted"]}; font-size: 12px; }}
.kr-rank {{ display: inline-block; width: 22px; height: 22px; border-radius: 50%;
  text-align: center; line-height: 22px; font-size: 12px; background: #eef0f3;
  color: {COLORS["ink"]}; margin-right: 6px; }}
.kr-bar {{ display: inline-block; vertical-align: middle; height: 8px; border-radius: 4px;
  background: #eef0f3; width: 80px; margin-right: 8px; overflow: hidden; }}
.kr-bar > span {{ display: block; height: 100%; border-radius: 4px; }}
.kr-funnel {{ display: flex; flex-direction: column; gap: 8px; }}
.kr-funnel-row {{ display: grid; grid-template-columns: minmax(0, 9em) 1fr; gap: 10px;
  align-items: center; font-size: 13.5px; }}
.kr-funnel-bar {{ height: 28px; border-radius: 6px; color: #fff; font-weight: 700; font-size: 13px;
  display: flex; align-items: center; padding: 0 10px; white-space: nowrap; min-width: 3.5em; }}
.kr-funnel-step {{ font-size: 12px; color: {COLORS["muted"]}; grid-column: 2; margin-top: -4px; }}
.kr-stats {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 100px), 1fr));
  gap: 10px; margin: 8px 0; }}
.kr-stat {{ background: #f7f9fb; border-radius: 10px; padding: 10px 12px; }}
.kr-stat .kr-stat-label {{ font-size: 12px; color: {COLORS["muted"]}; }}
.kr-stat .kr-stat-value {{ font-size: 20px; font-weight: 700; font-variant-numeric: tabular-nums; }}
.kr-callout {{ border-radius: 12px; padding: 14px 16px; margin: 0 0 16px; font-size: 14.5px;
  border: 1px solid; }}
.kr-callout.kr-good {{ background: #eefaf5; border-color: #bfe8d8; }}
.kr-callout.kr-warn {{ background: #fff8ec; border-color: #f5d9a8; }}
.kr-callout.kr-bad {{ background: #fff3ee; border-color: #f3c7b3; }}
.kr-callout.kr-neutral {{ background: #f5f7fa; border-color: {COLORS["grid"]}; }}
.kr-callout .kr-big {{ font-size: 22px; font-weight: 750; line-height: 1.3; }}
.kr-callout-title {{ font-size: 12px; text-transform: uppercase; letter-spacing: .05em;
  color: {COLORS["muted"]}; font-weight: 650; margin-bottom: 2px; }}
.kr-dq {{ background: #fffbea; border: 1px solid #f2e2a5; border-radius: 12px; padding: 12px 16px;
  margin: 0 0 16px; font-size: 13.5px; }}
.kr-dq ul {{ margin: 6px 0 0; padding-left: 20px; }}
.kr-glossary {{ display: grid;
  grid-template-columns: repeat(auto-fit, minmax(min(100%, 300px), 1fr));
  gap: 6px 24px; margin: 0; font-size: 13px; }}
.kr-glossary div {{ padding: 4px 0; border-bottom: 1px dashed #eceef1; }}
.kr-glossary dt {{ font-weight: 650; display: inline; }}
.kr-glossary dd {{ display: inline; margin: 0; color: #374151; }}
.kr-footer {{ font-size: 12px; color: {COLORS["muted"]}; border-top: 1px solid {COLORS["grid"]};
  padding-top: 10px; margin-top: 18px; overflow-wrap: anywhere; }}
.kr-footer code {{ font-size: 11.5px; background: #f3f4f6; padding: 1px 4px; border-radius: 4px; }}
.kr-legend {{ font-size: 12px; color: {COLORS["muted"]}; }}
.kr-swatch {{ display: inline-block; width: 10px; height: 10px; border-radius: 2px;
  margin: 0 4px 0 10px; vertical-align: -1px; }}
@media (max-width: 520px) {{
  .kr-band {{ padding: 16px; border-radius: 10px; }}
  .kr-band h1 {{ font-size: 22px; }}
  .kr-tiles {{ grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 8px; }}
  .kr-tile {{ padding: 10px 10px 8px; }}
  .kr-tile-value {{ font-size: 20px; }}
  .kr-tile.kr-hero .kr-tile-value {{ font-size: 26px; }}
  .kr-tile-line {{ font-size: 11.5px; }}
  .kr-card {{ padding: 12px; }}
  .kr-bar {{ width: 48px; }}
  .kr-outlook-row .kr-bar {{ display: none; }}
}}
/* Plain nbconvert 'lab' export (no kit template): frame the page, hide prompts. */
body.jp-Notebook {{ background: {COLORS["page"]}; }}
body.jp-Notebook > main {{ max-width: 1160px; margin: 0 auto; padding: 8px 16px 32px; }}
body.jp-Notebook .jp-OutputPrompt, body.jp-Notebook .jp-InputPrompt {{ display: none; }}
body.jp-Notebook .jp-Cell {{ padding: 0; }}
body.jp-Notebook .jp-OutputArea-output {{ overflow-x: visible; }}
body.jp-Notebook .anchor-link {{ display: none; }}
"""
