"""Warm kernels for the batch renderer: one kept-alive Jupyter kernel per worker process.

A fresh kernel per report pays a kernel start and the imports of pandas, matplotlib, seaborn
and kpi_lib (about 1.5 s) before the report's first line runs. Here each render worker keeps
one kernel: started once, warmed with those imports, and reset between reports. Papermill still
executes every notebook (its parameters cell, its metadata, the executed notebook kept for
audit); only its engine differs: ``kpi-warm`` hands papermill's notebook client the kept-alive
kernel instead of letting it start one.

The reset before each report (``reset_kernel``, run inside the kernel) gives the report what a
fresh kernel would: an empty user namespace (imported modules stay cached), execution counts
from 1, no open figures, matplotlib's rcParams, the warning filters, ``sys.path``, environment
and pandas options as they were right after the warm-up, the working directory of the batch,
and kpi_lib's function caches cleared. A kernel that dies, times out or cannot be reset is
restarted before the next report.

Example
-------
>>> execute_report_warm(Path("notebooks/rep.ipynb"), Path("/tmp/r.ipynb"),  # doctest: +SKIP
...                     {"period": "2026-10", "scope_id": "R001"}, timeout=600)
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

ENGINE_NAME = "kpi-warm"
WARM_UP_CODE = """\
import kpi_lib, kpi_lib.metrics.batch, kpi_lib.metrics.deals, kpi_lib.data.history, kpi_lib.report, kpi_lib.report.theme
import numpy, pandas, seaborn, matplotlib, matplotlib.figure, matplotlib.pyplot
import kpi_lib.publish.kernels as _kp
_kp.capture_baseline()
"""
RESET_TIMEOUT = 60.0


# --------------------------------------------------------------------------------------------
# Inside the kernel: the baseline after warm-up, and the reset back to it
# --------------------------------------------------------------------------------------------

_BASELINE: dict | None = None


def capture_baseline() -> None:
    """Remember the kernel's state right after the warm-up imports (runs in the kernel)."""
    global _BASELINE
    import warnings

    import matplotlib

    _BASELINE = {
        "rc": dict(matplotlib.rcParams),
        "filters": list(warnings.filters),
        "path": list(sys.path),
        "environ": dict(os.environ),
    }


def reset_kernel(cwd: str) -> None:
    """Bring the kernel back to its warm baseline before the next report (runs in the kernel).

    What a report may have changed and a fresh kernel would not have: user variables, figures,
    rcParams (seaborn's theme is applied per chart), warning filters and their once-registries,
    ``sys.path``, ``os.environ``, pandas options, the working directory, kpi_lib caches.
    """
    import gc
    import warnings

    import matplotlib
    from IPython import get_ipython

    if _BASELINE is None:
        raise RuntimeError("the warm kernel was not warmed up (no baseline)")
    shell = get_ipython()
    collect, gc.collect = gc.collect, lambda *args, **kwargs: 0
    try:  # IPython's reset ends with a full collection (0.15 s here): left to the automatic gc
        shell.reset(new_session=False)
    finally:
        gc.collect = collect
    shell.execution_count = 1
    if "matplotlib.pyplot" in sys.modules:
        plt = sys.modules["matplotlib.pyplot"]
        plt.close("all")
        if matplotlib.get_backend() != _BASELINE["rc"]["backend"]:
            plt.switch_backend(_BASELINE["rc"]["backend"])  # a report ran matplotlib.use(...)
    dict.update(matplotlib.rcParams, _BASELINE["rc"])
    warnings.filters[:] = _BASELINE["filters"]
    warnings._filters_mutated()  # forget which warnings were already shown "once"
    sys.path[:] = _BASELINE["path"]
    for key in set(os.environ) - set(_BASELINE["environ"]):
        del os.environ[key]
    for key, value in _BASELINE["environ"].items():
        if os.environ.get(key) != value:
            os.environ[key] = value
    if "pandas" in sys.modules:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sys.modules["pandas"].reset_option("all")
    os.chdir(cwd)
    clear_kpi_lib_caches()


def clear_kpi_lib_caches() -> int:
    """Clear every ``functools`` cache of kpi_lib's module-level functions; return how many."""
    cleared = 0
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "kpi_lib" or name.startswith("kpi_lib.")):
            continue
        for obj in list(vars(module).values()):
            if (
                callable(getattr(obj, "cache_clear", None))
                and getattr(obj, "__module__", None) == name
            ):
                obj.cache_clear()
                cleared += 1
    return cleared


# --------------------------------------------------------------------------------------------
# In the worker: the kept-alive kernel
# --------------------------------------------------------------------------------------------


class KernelResetError(RuntimeError):
    """The warm-up or the reset code failed in the kernel; the kernel will be restarted."""


class WarmKernel:
    """One kept-alive kernel: started and warmed on first use, reset before every report.

    Example
    -------
    >>> kernel = WarmKernel("python3")          # doctest: +SKIP
    >>> kernel.ready(cwd="/work/main")            # doctest: +SKIP
    >>> kernel.km, kernel.kc                      # doctest: +SKIP
    """

    def __init__(self, kernel_name: str = "python3", startup_timeout: float = 60.0):
        self.kernel_name = kernel_name
        self.startup_timeout = startup_timeout
        self.km = None
        self.kc = None
        self.needs_restart = False
        self.starts = 0
        self.reports = 0
        self._socket_dir: str | None = None

    def start(self, cwd: str | None = None) -> None:
        """Start the kernel and import what every report imports; a start that fails is tried
        once more (a kernel can die before its first reply on a loaded machine)."""
        try:
            self._start_once(cwd)
        except Exception:  # noqa: BLE001 - retried once; a second failure propagates
            self.shutdown()
            self._start_once(cwd)

    def _start_once(self, cwd: str | None) -> None:
        import tempfile

        import nbformat
        from nbclient import NotebookClient

        client = NotebookClient(
            nbformat.v4.new_notebook(),
            kernel_name=self.kernel_name,
            startup_timeout=int(self.startup_timeout),
        )
        client.km = client.create_kernel_manager()
        # Unix sockets in a private directory, not TCP ports: kernels started at the same
        # moment by sibling workers cannot race for a port, and nothing listens on the network.
        self._socket_dir = tempfile.mkdtemp(prefix="kpi-kernel-")
        client.km.transport = "ipc"
        client.km.ip = os.path.join(self._socket_dir, "k")
        self.km = client.km
        client.start_new_kernel(cwd=cwd)
        client.start_new_kernel_client()
        self.kc = client.kc
        self.starts += 1
        self.needs_restart = False
        self._run(WARM_UP_CODE, timeout=max(self.startup_timeout, 120.0))

    def shutdown(self) -> None:
        """Stop the kernel (immediately) and its channels; safe to call twice."""
        from jupyter_core.utils import run_sync

        km, kc, self.km, self.kc = self.km, self.kc, None, None
        try:
            if kc is not None:
                kc.stop_channels()
            if km is not None and run_sync(km.is_alive)():
                run_sync(km.shutdown_kernel)(now=True)
        except Exception:  # noqa: BLE001 - a kernel already gone is shut down
            pass
        finally:
            if km is not None:
                try:
                    run_sync(km.cleanup_resources)()
                except Exception:  # noqa: BLE001
                    pass
            if self._socket_dir is not None:
                shutil.rmtree(self._socket_dir, ignore_errors=True)
                self._socket_dir = None

    def is_alive(self) -> bool:
        from jupyter_core.utils import run_sync

        return self.km is not None and bool(run_sync(self.km.is_alive)())

    def ready(self, cwd: str) -> None:
        """Make the kernel ready for the next report: (re)start it if needed, then reset it."""
        if self.needs_restart or not self.is_alive():
            self.shutdown()
            self.start(cwd)
        try:
            self._run(
                f"import kpi_lib.publish.kernels as _kp; _kp.reset_kernel({cwd!r})",
                timeout=RESET_TIMEOUT,
            )
        except Exception:
            self.shutdown()
            self.start(cwd)
            self._run(
                f"import kpi_lib.publish.kernels as _kp; _kp.reset_kernel({cwd!r})",
                timeout=RESET_TIMEOUT,
            )
        self.reports += 1

    def _run(self, code: str, timeout: float) -> None:
        """Run ``code`` silently (no output, no history, no execution count); raise on error."""
        from jupyter_core.utils import run_sync

        errors: list[str] = []

        def hook(msg: dict) -> None:
            if msg["msg_type"] == "error":
                errors.append(f"{msg['content']['ename']}: {msg['content']['evalue']}")

        reply = run_sync(self.kc.execute_interactive)(
            code,
            silent=True,
            store_history=False,
            timeout=timeout,
            output_hook=hook,
        )
        content = reply["content"]
        if content.get("status") != "ok":
            detail = errors[0] if errors else f"{content.get('ename')}: {content.get('evalue')}"
            raise KernelResetError(f"warm kernel setup failed: {detail}")


_KERNEL: WarmKernel | None = None


def worker_kernel(kernel_name: str) -> WarmKernel:
    """This worker process's warm kernel (one per process, shut down when the process exits)."""
    global _KERNEL
    if _KERNEL is None or _KERNEL.kernel_name != kernel_name:
        if _KERNEL is not None:
            _KERNEL.shutdown()
        import atexit

        _KERNEL = WarmKernel(kernel_name)
        atexit.register(_KERNEL.shutdown)
    return _KERNEL


# --------------------------------------------------------------------------------------------
# The papermill engine and the warm execute_report
# --------------------------------------------------------------------------------------------


def _engine():
    """The ``kpi-warm`` papermill engine class, registered with papermill on first use."""
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, papermill_engines
    from papermill.utils import merge_kwargs, remove_args

    class WarmEngine(NBClientEngine):
        """papermill's nbclient engine on a kept-alive kernel (``warm_kernel=`` a WarmKernel)."""

        @classmethod
        def execute_managed_notebook(
            cls,
            nb_man,
            kernel_name,
            log_output=False,
            stdout_file=None,
            stderr_file=None,
            start_timeout=60,
            execution_timeout=None,
            warm_kernel=None,
            **kwargs,
        ):
            if warm_kernel is None or warm_kernel.kc is None:
                raise ValueError("the kpi-warm engine needs warm_kernel=, a started WarmKernel")
            kwargs = remove_args(["input_path", "timeout", "startup_timeout"], **kwargs)
            final = merge_kwargs(
                kwargs,
                timeout=execution_timeout,
                startup_timeout=start_timeout,
                kernel_name=kernel_name,
                log_output=log_output,
                stdout_file=stdout_file,
                stderr_file=stderr_file,
            )
            from papermill.log import logger

            client = PapermillNotebookClient(nb_man, km=warm_kernel.km, log=logger, **final)
            client.kc = warm_kernel.kc
            return client.execute(cleanup_kc=False)

    if ENGINE_NAME not in papermill_engines._engines:
        papermill_engines.register(ENGINE_NAME, WarmEngine)
    return papermill_engines.get_engine(ENGINE_NAME)


def execute_report_warm(
    notebook: Path,
    output: Path,
    parameters: dict,
    *,
    timeout: float,
    kernel: str = "python3",
    cwd: Path | None = None,
) -> None:
    """``kpi_lib.publish.execute.execute_report`` on this worker's warm kernel.

    Same contract: the whole notebook within ``timeout`` seconds; on failure the executed
    notebook is still written and the error raised (``PapermillExecutionError`` for a cell
    that raised, ``TimeoutError`` when out of time). After a timeout, a dead kernel or any
    other failure than a cell's exception, the kernel is restarted before the next report.
    """
    from papermill.exceptions import PapermillExecutionError

    from kpi_lib.publish.execute import execute_report

    _engine()
    warm = worker_kernel(kernel)
    warm.ready(str(cwd or Path.cwd()))
    try:
        execute_report(
            notebook,
            output,
            parameters,
            timeout=timeout,
            kernel=kernel,
            cwd=cwd,
            engine_name=ENGINE_NAME,
            warm_kernel=warm,
        )
    except PapermillExecutionError:
        raise  # an exception in a cell: the kernel is fine, the next reset cleans up
    except BaseException:  # a timeout, a dead kernel: restart before the next report
        warm.needs_restart = True
        raise
