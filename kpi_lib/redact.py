"""Secrets stay secret: one place that removes credentials from anything the kit writes or says.

Two kinds of secret reach the kit:

* a database URL with a password, ``postgresql://kpi:s3cret@db.internal/crm`` (as ``--source``
  or in a source YAML), and
* the SMTP password, only ever from the environment variable ``KPI_SMTP_PASSWORD``, and
* the Slack and Teams incoming-webhook URLs of channel recipients (whoever has the URL can post
  to the channel): ``add_secret`` registers each one when the recipients file is read, and the
  usual shapes (``hooks.slack.com/...``, ``...webhook.office.com/...``, a ``sig=`` signature)
  are masked even before that.

``redact`` is applied to every manifest, log line and error message the kit writes; it turns the
URL into ``postgresql://kpi:***@db.internal/crm`` and any secret value into ``***``.

The report kernels still need the real URL to run their few detail queries. The renderer hands
them the redacted URL as the papermill parameter (so executed notebooks and report footers show
no password) and the real one through the process environment (``KPI_SOURCE_URL``, inherited by
every worker and kernel it starts); ``reveal`` turns the redacted URL back into the real one where
the connection is made (``kpi_lib.data.warehouse.load_remote``). Safer still: keep the password out
of the URL altogether and give it to the driver the usual way (``PGPASSWORD``, ``~/.pgpass``).

Example
-------
>>> redact("cannot connect to postgresql://kpi:s3cret@db:5432/crm")
'cannot connect to postgresql://kpi:***@db:5432/crm'
"""

from __future__ import annotations

import os
import re

__all__ = [
    "MASK",
    "add_secret",
    "SECRET_ENV",
    "SOURCE_URL_ENV",
    "hide_source",
    "redact",
    "reveal",
    "secret_values",
]

MASK = "***"
SECRET_ENV = ("KPI_SMTP_PASSWORD", "PGPASSWORD")
"""Environment variables whose values are secrets wherever they show up."""
SOURCE_URL_ENV = "KPI_SOURCE_URL"
"""Where the renderer puts the real source URL for its kernels (never written to a file)."""

# scheme://user:password@  (the password is whatever sits between the first ':' and the '@')
_URL_PASSWORD = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s'\"<>]*):"
    r"(?P<password>[^@\s'\"<>]*)@"
)
# key=value connection strings: "host=db password=s3cret", "PWD=s3cret;"
_KEY_PASSWORD = re.compile(
    r"(?i)\b(?P<key>password|passwd|pwd)(?P<eq>\s*=\s*)"
    r"(?P<password>'[^']*'|\"[^\"]*\"|[^\s;,&'\"]+)"
)
# incoming webhooks: the path is the credential (Slack, Teams connectors), or the signature
_WEBHOOK = re.compile(
    r"(?P<head>https?://(?:hooks\.slack(?:-gov)?\.com|[A-Za-z0-9.-]*webhook\.office\.com)/)"
    r"[^\s'\"<>]+"
)
_SIGNATURE = re.compile(r"(?i)\b(?P<key>sig)=(?P<value>[^\s&'\"<>]+)")
_MIN_SECRET = 4  # shorter values would mask ordinary words and digits
_REGISTERED: set[str] = set()


def add_secret(value: str) -> None:
    """Treat ``value`` as a secret from now on in this process (a webhook URL, a token):
    ``redact`` masks it wherever it appears.

    Example
    -------
    >>> add_secret("https://example.invalid/hook/T0/B0/xyz")
    >>> redact("posting to https://example.invalid/hook/T0/B0/xyz failed")
    'posting to *** failed'
    """
    if value and len(value) >= _MIN_SECRET:
        _REGISTERED.add(value)


def secret_values() -> list[str]:
    """The secret values currently known: the environment's passwords, the source URL's and
    those registered with ``add_secret``."""
    values = [os.environ.get(name, "") for name in SECRET_ENV]
    url = os.environ.get(SOURCE_URL_ENV, "")
    match = _URL_PASSWORD.search(url)
    if match:
        values.append(match["password"])
    values += _REGISTERED
    return sorted({v for v in values if len(v) >= _MIN_SECRET}, key=len, reverse=True)


def redact(text) -> str:
    """``text`` with URL passwords, ``password=`` values, known secret values and webhook
    URLs masked.

    Parameters
    ----------
    text
        Anything; it is turned into ``str`` first (an exception, a path, a manifest's JSON).

    Example
    -------
    >>> redact("host=db user=kpi password=s3cret dbname=crm")
    'host=db user=kpi password=*** dbname=crm'
    """
    text = str(text)
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}:{MASK}@" if m["password"] else m[0], text)
    text = _KEY_PASSWORD.sub(lambda m: f"{m['key']}{m['eq']}{MASK}", text)
    for value in secret_values():  # whole values first: a registered URL becomes one mask
        text = text.replace(value, MASK)
    text = _WEBHOOK.sub(lambda m: f"{m['head']}{MASK}", text)
    text = _SIGNATURE.sub(lambda m: f"{m['key']}={MASK}", text)
    return text


def hide_source(source: str) -> str:
    """The source as outputs may show it; a URL's password moves to ``KPI_SOURCE_URL``.

    Called once by the renderer before it starts workers: they and their kernels inherit the
    environment, so ``reveal(hide_source(url)) == url`` holds in every process of the batch.

    Example
    -------
    >>> hide_source("data/demo.duckdb")
    'data/demo.duckdb'
    """
    source = str(source)
    match = _URL_PASSWORD.search(source)
    if match and match["password"]:
        os.environ[SOURCE_URL_ENV] = source
    return redact(source)


def reveal(source: str) -> str:
    """The real URL behind a redacted one, when this process was given it; else ``source``.

    Example
    -------
    >>> reveal("duckdb:///data/demo.duckdb")
    'duckdb:///data/demo.duckdb'
    """
    source = str(source)
    real = os.environ.get(SOURCE_URL_ENV, "")
    if f":{MASK}@" in source and real and redact(real) == source:
        return real
    return source
