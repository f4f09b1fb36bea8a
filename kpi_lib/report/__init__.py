"""The report wing: what a report notebook calls.

It owns ``open_report`` and the ``Report`` of one page (``page``), its sections by concern
(``headline``, ``trends``, ``tables``, ``notes``), the blocks they are made of (``html``,
``tiles``, ``charts``, ``styles``), the look of every number and chart (``theme``), and a period
still in progress (``in_progress``). It imports ``metrics``, ``data`` and the shared root;
``publish`` renders the notebooks that call it.

Example
-------
>>> from kpi_lib.report import open_report
>>> report = open_report("manager", "2026-10", "na-ent")     # doctest: +SKIP
"""

from kpi_lib.report.page import *  # noqa: F403 - the notebooks' surface: open_report and co.
from kpi_lib.report.page import __all__  # noqa: F401
