"""The data wing: from any source to the canonical tables, checked.

It owns the data contract (``schema``), reading a source of any kind (files, CRM exports through
``presets`` and column maps, DuckDB files and warehouses, the ``demo`` generator), the rules that
quarantine rows or report findings, ``validate``'s data-quality report, snapshot ``history``,
and which configuration belongs to a source's ``org``. It imports only the shared root
(``kpi_lib.errors``, ``periods``, ``clock``, ``paths``, ``redact``); ``metrics`` reads what it
loads, never the other way round.
"""
