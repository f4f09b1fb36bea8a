"""A stand-in report notebook for the tests of the renderer (fast to execute, no data)."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


def stand_in_notebook(path: Path, extra_cell: str = "") -> Path:
    """A tiny report notebook: the parameters cell, a heading, a line of HTML and a chart.

    ``extra_cell`` runs before the output (to fail or hang on purpose). The page shows
    ``run=<KPI_TEST_RUN>`` so a test can tell which batch wrote it.
    """
    cells = [
        new_code_cell(
            'period: str = ""\nscope_id: str = "all"\nsource: str = ""\n'
            'batch_dir: str = ""\ntargets: str = ""',
            metadata={"tags": ["parameters"]},
        ),
        new_markdown_cell("# Stand-in report"),
    ]
    if extra_cell:
        cells.append(new_code_cell(extra_cell))
    cells.append(
        new_code_cell(
            "import os\nimport matplotlib\nmatplotlib.use('agg')\nimport matplotlib.pyplot as plt\n"
            "from IPython.display import HTML, display\n"
            "display(HTML(f\"<p class='who'>{scope_id} run={os.environ.get('KPI_TEST_RUN')}</p>\"))\n"
            "fig, ax = plt.subplots(figsize=(2, 1))\nax.plot([1, 3, 2])\ndisplay(fig)\nplt.close(fig)"
        )
    )
    nb = new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path
