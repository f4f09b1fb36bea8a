"""The publish wing: from a batch to pages, files, inboxes and channels.

It owns the report matrix and plan (``plan``), running and exporting one notebook
(``execute``), the fan-out ``render`` with its warm ``kernels`` and reuse ``cache``, report
``file_names``, the batch's ``index`` and manifest, the scope ``audit``, ``recipients``, the email
``digest`` and ``send``, Slack and Teams ``channels``, the send ``ledger`` and ``retry`` policy,
the ``guards`` that hold a batch back when its source looks wrong, the ``operators``' notice,
KPI ``alerts``, the unattended ``schedule``, and ``org_setup`` (``init``). It may import
every wing below it (``report``, ``metrics``, ``data``) and the shared root; only the CLI
imports it.
"""
