"""One report: execute its notebook (papermill) and export the page (nbconvert, no code).

``execute_report`` is the one place a kernel runs a notebook (the warm pool of
``kpi_lib.publish.kernels`` passes it its engine); ``export_html`` turns the executed notebook
into the self-contained page a reader gets.

Example
-------
>>> execute_report(Path("notebooks/rep.ipynb"), Path("/tmp/r.ipynb"),   # doctest: +SKIP
...                {"period": "2026-10", "scope_id": "R001"}, timeout=600)
>>> page = export_html(Path("/tmp/r.ipynb"), title="R001")               # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from functools import lru_cache
from pathlib import Path

TEMPLATES = Path(__file__).parent / "templates"


TEMPLATE_NAME = "kpi_report"


def execute_report(
    notebook: Path,
    output: Path,
    parameters: dict,
    *,
    timeout: float,
    kernel: str = "python3",
    cwd: Path | None = None,
    **engine_options,
) -> None:
    """Execute one report notebook in a fresh kernel and write the executed notebook.

    This is the one place that runs a kernel: a warm kernel pool replaces this function.
    The whole notebook must finish within ``timeout`` seconds (not each cell). On failure
    the executed notebook (with the traceback) is still written, then the error is raised:
    ``papermill.PapermillExecutionError`` for an exception in a cell, ``TimeoutError`` when
    the report ran out of time. ``engine_options`` go to papermill: the warm pool passes its
    engine and kernel (``kpi_lib.publish.kernels.execute_report_warm``).

    Example
    -------
    >>> execute_report(Path("notebooks/rep.ipynb"), Path("/tmp/r.ipynb"),  # doctest: +SKIP
    ...                {"period": "2026-10", "scope_id": "R001"}, timeout=600)
    """
    import papermill
    from nbclient.exceptions import CellTimeoutError

    deadline = time.monotonic() + timeout

    def remaining(_cell=None) -> int:
        return max(1, math.ceil(deadline - time.monotonic()))

    try:
        papermill.execute_notebook(
            str(notebook),
            str(output),
            parameters=parameters,
            kernel_name=kernel,
            cwd=str(cwd) if cwd else None,
            progress_bar=False,
            log_output=False,
            request_save_on_cell_execute=False,
            start_timeout=min(60, remaining()),
            timeout_func=remaining,
            **engine_options,
        )
    except CellTimeoutError as exc:
        raise TimeoutError(f"report timed out after {timeout:g} s") from exc


@lru_cache(maxsize=1)
def _exporter():
    from nbconvert import HTMLExporter

    return HTMLExporter(
        template_name=TEMPLATE_NAME,
        extra_template_basedirs=[str(TEMPLATES)],
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        exclude_anchor_links=True,
        embed_images=True,
    )


def export_html(
    executed: Path, *, title: str, period: str = "", index_href: str | None = None
) -> str:
    """The report page of an executed notebook: outputs and narrative, no code, no scripts.

    Images are embedded as ``data:`` URIs and the CSS is inline, so the page is one file.
    Cells tagged ``remove-cell`` are dropped, and ``remove-output`` cells lose their outputs.
    """
    import nbformat
    from nbconvert import __version__ as nbconvert_version
    from nbconvert.preprocessors import TagRemovePreprocessor

    nb = nbformat.read(str(executed), as_version=4)
    nb, _ = TagRemovePreprocessor(
        remove_cell_tags={"remove-cell", "remove_cell"},
        remove_all_outputs_tags={"remove-output", "remove_output"},
        enabled=True,
    ).preprocess(nb, {})
    resources = {
        "metadata": {"name": title},
        "report": {
            "title": title,
            "period": period,
            "index_href": index_href,
            "nbconvert_version": nbconvert_version,
        },
    }
    body, _ = _exporter().from_notebook_node(nb, resources=resources)
    return body
