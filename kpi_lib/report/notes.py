"""The closing sections of a report: glossary, data-quality note, provenance footer."""

from __future__ import annotations

from collections.abc import Sequence

from kpi_lib.metrics.registry import HEADLINE_KPIS, REGISTRY, get_kpi
from kpi_lib.report.html import Html, card, esc


class NoteSections:
    """Glossary, data quality and footer of ``Report`` (a mixin)."""

    def glossary(self, kpis: Sequence[str] | None = None) -> Html:
        """The plain-language definition of each KPI shown, from the registry."""
        names = list(
            kpis
            or [
                *HEADLINE_KPIS,
                "quota_attainment",
                "deals_needed",
                "pipeline_amount",
                "weighted_pipeline",
                "churn_rate",
            ]
        )
        names = [n for n in dict.fromkeys(names) if self.scope in get_kpi(n).scopes]
        items = "".join(
            f"<div><dt>{esc(REGISTRY[n].label)}:</dt> <dd>{esc(REGISTRY[n].definition)}</dd></div>"
            for n in names
        )
        return self._block(card("What the numbers mean", f'<dl class="kr-glossary">{items}</dl>'))

    def data_quality(self) -> Html:
        """A note listing unavailable KPIs and data-quality findings; empty when all is well."""
        unpriced = self.unpriced_note()
        findings = [unpriced] if unpriced else []
        findings += list(getattr(self.ctx, "findings", []) or [])
        unavailable = self.unavailable
        if not findings and not unavailable:
            return Html("")
        items = [
            f"<li><b>{esc(get_kpi(k).label if k.split(':')[0] in REGISTRY else k)}</b> "
            f"is not available: {esc(reason)}</li>"
            for k, reason in unavailable.items()
        ]
        items += [f"<li>{esc(f)}</li>" for f in findings[:12]]
        if len(findings) > 12:
            items.append(
                f"<li>… and {len(findings) - 12} more findings "
                "(see <code>python -m kpi_lib validate</code>).</li>"
            )
        return self._block(
            f'<div class="kr-dq"><b>Data quality.</b> Some figures are missing '
            f"or rest on rows that were set aside:<ul>{''.join(items)}</ul></div>"
        )

    def footer(self) -> Html:
        """Provenance: parameters, data fingerprint, code version, times."""
        params = " ".join(
            f"<code>{esc(k)}={esc(v)!s}</code>" for k, v in self.parameters.items() if v != ""
        )
        return self._block(
            f'<footer class="kr-footer">Parameters: {params}<br>'
            f"Data fingerprint <code>{esc(self.ctx.fingerprint)}</code> · data as of "
            f"{esc(self.ctx.as_of)} · code <code>{esc(self.ctx.code_version)}</code> · "
            f"generated {esc(self.ctx.generated_at)}</footer>"
        )
