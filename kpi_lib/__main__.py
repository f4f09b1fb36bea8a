"""``python -m kpi_lib``: see ``kpi_lib.cli``."""

import sys

from kpi_lib.cli import main

sys.exit(main())
