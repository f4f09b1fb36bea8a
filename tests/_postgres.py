"""A throwaway PostgreSQL 15 cluster on 127.0.0.1 for the tests that need a real server.

``initdb`` into a fresh folder, ``pg_ctl start`` on a free port, a database ``crm``; stopped by
PID and deleted on exit. As root the server runs as ``nobody`` (PostgreSQL refuses root), in a
folder outside pytest's tmp tree, which is private to root.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def throwaway_postgres(password: str | None = None, **settings: str) -> Iterator[str]:
    """Start a cluster; yield the URL of its empty database ``crm`` for user ``kpi``.

    With ``password`` the server accepts ``kpi`` with that password only (scram-sha-256);
    without, it trusts local connections. ``settings`` are server settings
    (``work_mem="256MB"``). The server is stopped with a fast shutdown: a query still running
    is cancelled.

    Example
    -------
    >>> with throwaway_postgres() as url:      # doctest: +SKIP
    ...     url
    'postgresql://kpi@127.0.0.1:41234/crm'
    """
    if not (PG_BIN / "initdb").exists():
        raise RuntimeError(f"PostgreSQL 15 server binaries not found under {PG_BIN}")
    root = Path(tempfile.mkdtemp(prefix="kpi-pg-"))
    data = root / "data"
    user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
    auth = ["--auth=trust"]
    if password is not None:
        (root / "pw").write_text(password + "\n")
        auth = ["--auth=scram-sha-256", f"--pwfile={root / 'pw'}"]
    if user:
        os.chmod(root, 0o777)
        for path in (root, *root.iterdir()):
            shutil.chown(path, "nobody")
    subprocess.run(
        [
            *user,
            str(PG_BIN / "initdb"),
            "-D",
            str(data),
            "-U",
            "kpi",
            *auth,
            "-E",
            "UTF8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
    )
    if password is not None:
        (root / "pw").unlink()
    port = free_port()
    options = " ".join(f"-c {name}={value}" for name, value in settings.items())
    subprocess.run(
        [
            *user,
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(root / "log"),
            "-w",
            "-o",
            f"-h 127.0.0.1 -p {port} -k {root} -F {options}",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    pid = int((data / "postmaster.pid").read_text().split()[0])
    secret = f":{password}" if password is not None else ""
    try:
        _create_database(port, password)
        yield f"postgresql://kpi{secret}@127.0.0.1:{port}/crm"
    finally:
        os.kill(pid, signal.SIGINT)
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        shutil.rmtree(root, ignore_errors=True)


def _create_database(port: int, password: str | None) -> None:
    import psycopg

    login = f"host=127.0.0.1 port={port} user=kpi dbname=postgres"
    if password is not None:
        login += f" password={password}"
    deadline = time.time() + 30
    while True:
        try:
            with psycopg.connect(login, autocommit=True) as c:
                c.execute("CREATE DATABASE crm")
            return
        except psycopg.OperationalError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)


def load_tables(url: str, tables: dict) -> None:
    """Copy ``{name: DataFrame}`` into the database at ``url`` (tables replaced)."""
    import ibis

    con = ibis.connect(url)
    for name, df in tables.items():
        con.create_table(name, df, overwrite=True)
    con.disconnect()
