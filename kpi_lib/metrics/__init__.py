"""The metrics wing: every KPI, computed once, for periods and scopes.

It owns the KPI ``registry``, the additive ``measures`` computed in the database, the ``cube``
(period x scope x KPI), ``targets``, how figures ``compare``, the deal-level detail tables of
``deals``, the ``month_to_date`` comparison and the ``batch`` a period's reports share. It
imports the ``data`` wing and the shared root; ``report`` and ``publish`` read it.
"""
