"""Benchmark: the batch render of a month against the naive loop, side by side in one run.

Four runs on the demo CRM, every report of ``--period`` (the executive, every team, every rep):

- ``naive``: per report, the ``papermill`` CLI, then ``jupyter nbconvert --to html --no-input``,
  one after the other. Run on a subset of ``--naive-n`` reports (the executive, managers and
  reps in turn) and extrapolated to the month from the mean per report. The notebooks get the
  same ``batch_dir`` (the cube computed once) as ours, so the ratio measures the rendering
  machinery only, not the cube;
- ``fresh``: ``python -m kpi_lib render --force --fresh-kernels`` (papermill's plain path, a
  fresh kernel per report, one process per core);
- ``warm``: ``python -m kpi_lib render --force`` (one warm kernel per core, reset between
  reports);
- ``rerun``: ``python -m kpi_lib render`` again, nothing changed: every report is reused.

Each run is a subprocess; its peak memory is the largest sum of resident memory over its
process tree (workers and kernels included), sampled every 50 ms.

With ``--scale 10`` (the default; 0 skips it) the month of the demo CRM at ten times its size
is rendered too, warm and then unchanged: the company, 6 teams and every active rep of 360.

Usage::

    python bench/render.py [--period 2026-10] [--naive-n 6] [--jobs N] [--scale 10]

Writes ``bench/results/render.json`` and ``bench/results/render.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
WORK = RESULTS / "render-work"
PY = sys.executable
GOALS = {"ratio": 8.0, "per_report_s": 1.0, "rerun_s": 3.0, "html_kb": 300.0}


def tree_rss(proc: psutil.Process) -> int:
    """Resident bytes of a process and all its descendants (0 for those already gone)."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run(command: list[str], **kwargs) -> dict:
    """Run a command; its wall time, exit code, output tail and peak tree RSS in MB."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs
    )
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        ps = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                peak[0] = max(peak[0], tree_rss(ps))
            except psutil.Error:
                pass
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    done.set()
    sampler.join()
    return {
        "seconds": time.perf_counter() - started,
        "returncode": proc.returncode,
        "peak_mb": peak[0] / 2**20,
        "stderr": err[-2000:],
        "stdout": out[-2000:],
    }


def machine() -> dict:
    model = ""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(
            (
                line.split(":", 1)[1].strip()
                for line in lscpu.splitlines()
                if line.startswith("Model name")
            ),
            "",
        )
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": model or platform.processor(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
    }


def load() -> float:
    return round(os.getloadavg()[0], 2)


def manifest_stats(period_dir: Path) -> dict:
    m = json.loads((period_dir / "manifest.json").read_text())
    reports = m["reports"]
    seconds = [r["seconds"] for r in reports if r.get("seconds") and not r.get("reused")]
    sizes = [r["html_bytes"] for r in reports if r.get("html_bytes")]
    by_role = {}
    for r in reports:
        if r.get("html_bytes"):
            by_role.setdefault(r["role"], []).append(r["html_bytes"])
    return {
        "reports": len(reports),
        "ok": m["counts"]["ok"],
        "failed": m["counts"]["failed"],
        "reused": sum(bool(r.get("reused")) for r in reports),
        "batch_seconds_inside": m["seconds"],
        "per_report_median_s": statistics.median(seconds) if seconds else None,
        "html_kb_median": statistics.median(sizes) / 1024 if sizes else None,
        "html_kb_max": max(sizes) / 1024 if sizes else None,
        "html_kb_median_by_role": {k: statistics.median(v) / 1024 for k, v in by_role.items()},
        "plan": [(r["role"], r["scope_id"]) for r in reports],
    }


def ours(args, label: str, *flags: str, source: str | None = None, work: str = "ours") -> dict:
    command = [
        PY,
        "-m",
        "kpi_lib",
        "render",
        "--period",
        args.period,
        "--source",
        source or args.source,
        "--out",
        str(WORK / work),
        "--as-of",
        args.as_of,
        *flags,
    ]
    if args.jobs:
        command += ["--jobs", str(args.jobs)]
    before = load()
    result = run(command)
    if result["returncode"] != 0:
        raise SystemExit(f"{label} failed:\n{result['stderr']}")
    stats = manifest_stats(WORK / work / args.period)
    stats.pop("plan")
    return {
        "name": label,
        "wall_s": result["seconds"],
        "peak_mb": result["peak_mb"],
        "load_before": before,
        **stats,
    }


def naive(args, plan: list[tuple[str, str]]) -> dict:
    """papermill CLI then nbconvert CLI per report, sequentially, on a subset of the plan."""
    picks, by_role = [], {}
    for role, scope_id in plan:
        by_role.setdefault(role, []).append(scope_id)
    while len(picks) < min(args.naive_n, len(plan)):
        for role in list(by_role):
            if by_role[role] and len(picks) < args.naive_n:
                picks.append((role, by_role[role].pop(0)))
    data_dir = (WORK / "ours" / args.period / "_data").resolve()
    out = WORK / "naive"
    out.mkdir(parents=True, exist_ok=True)
    times, sizes, peaks = [], [], []
    for role, scope_id in picks:
        executed = out / f"{role}-{scope_id}.ipynb"
        started = time.perf_counter()
        pm = run(
            [
                str(Path(PY).with_name("papermill")),
                f"notebooks/{role}.ipynb",
                str(executed),
                "-p",
                "period",
                args.period,
                "-p",
                "scope_id",
                scope_id,
                "-p",
                "source",
                str((ROOT / args.source).resolve()),
                "-p",
                "batch_dir",
                str(data_dir),
                "-p",
                "targets",
                str((ROOT / "params/targets.yaml").resolve()),
            ]
        )
        nc = run(
            [
                str(Path(PY).with_name("jupyter")),
                "nbconvert",
                "--to",
                "html",
                "--no-input",
                str(executed),
                "--output-dir",
                str(out),
            ]
        )
        if pm["returncode"] or nc["returncode"]:
            raise SystemExit(f"naive {role}/{scope_id} failed:\n{pm['stderr']}\n{nc['stderr']}")
        times.append(time.perf_counter() - started)
        sizes.append(executed.with_suffix(".html").stat().st_size)
        peaks.append(max(pm["peak_mb"], nc["peak_mb"]))
    return {
        "name": "naive",
        "subset": [f"{r}/{s}" for r, s in picks],
        "times_s": times,
        "per_report_median_s": statistics.median(times),
        "per_report_mean_s": statistics.mean(times),
        "batch_extrapolated_s": statistics.mean(times) * len(plan),
        "html_kb_median": statistics.median(sizes) / 1024,
        "peak_mb": max(peaks),
    }


def markdown(res: dict) -> str:
    n = res["reports"]
    nv, fr, wm, rr = res["naive"], res["fresh"], res["warm"], res["rerun"]
    ratio = nv["batch_extrapolated_s"] / wm["wall_s"]
    per_report = wm["wall_s"] / n
    rows = [
        (
            "naive loop (papermill CLI + nbconvert CLI, sequential)",
            nv["per_report_median_s"],
            nv["batch_extrapolated_s"],
            1.0,
            nv["html_kb_median"],
            nv["peak_mb"],
            f"extrapolated from {len(nv['subset'])} reports",
        ),
        (
            "ours, `--fresh-kernels`",
            fr["per_report_median_s"],
            fr["wall_s"],
            nv["batch_extrapolated_s"] / fr["wall_s"],
            fr["html_kb_median"],
            fr["peak_mb"],
            f"{fr['jobs']} workers",
        ),
        (
            "ours, warm kernels",
            wm["per_report_median_s"],
            wm["wall_s"],
            ratio,
            wm["html_kb_median"],
            wm["peak_mb"],
            f"{wm['jobs']} workers",
        ),
        (
            "ours, unchanged rerun",
            None,
            rr["wall_s"],
            nv["batch_extrapolated_s"] / rr["wall_s"],
            rr["html_kb_median"],
            rr["peak_mb"],
            f"{rr['reused']} of {n} reused",
        ),
    ]
    lines = [
        f"Render benchmark: the demo month {res['period']} ({n} reports: "
        + ", ".join(f"{v} {k}" for k, v in res["roles"].items())
        + "), wall time of the whole command (`python -m kpi_lib render ...`, including the "
        "cube and the index).",
        "",
        "| run | per report s (median) | batch wall s | naive / this | HTML KB (median) "
        "| peak MB | note |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, per, wall, r, kb, mb, note in rows:
        lines.append(
            f"| {name} | {'' if per is None else f'{per:.2f}'} | {wall:.1f} | "
            f"{r:.1f} | {kb:.0f} | {mb:.0f} | {note} |"
        )
    lines += [
        "",
        "- Per report, median: the time one worker spends on one report (execute + export); "
        "the naive figure is papermill CLI + nbconvert CLI for one report.",
        f"- Batch per report (warm): {per_report:.2f} s ({wm['wall_s']:.1f} s / {n} reports on "
        f"{wm['jobs']} workers); goal < {GOALS['per_report_s']:.0f} s: "
        f"{'met' if per_report < GOALS['per_report_s'] else 'missed'}.",
        f"- Warm batch vs the naive loop: {ratio:.1f} x faster; goal >= {GOALS['ratio']:.0f} x: "
        f"{'met' if ratio >= GOALS['ratio'] else 'missed'}. Warm vs fresh kernels: "
        f"{fr['wall_s'] / wm['wall_s']:.1f} x.",
        f"- Unchanged rerun: {rr['wall_s']:.1f} s; goal < {GOALS['rerun_s']:.0f} s: "
        f"{'met' if rr['wall_s'] < GOALS['rerun_s'] else 'missed'}.",
        f"- Report HTML: median {wm['html_kb_median']:.0f} KB, largest {wm['html_kb_max']:.0f} KB "
        "(by role: "
        + ", ".join(f"{k} {v:.0f} KB" for k, v in wm["html_kb_median_by_role"].items())
        + f"); goal < {GOALS['html_kb']:.0f} KB: "
        f"{'met' if wm['html_kb_max'] < GOALS['html_kb'] else 'missed'}. The naive export "
        f"(nbconvert's default template, code hidden) is {nv['html_kb_median']:.0f} KB.",
        f"- Naive subset: {', '.join(nv['subset'])}; per report "
        + ", ".join(f"{t:.1f}" for t in nv["times_s"])
        + " s. It reads the same precomputed "
        "cube (`batch_dir`) as ours, so the ratio is the rendering machinery only.",
        "",
        f"Machine: {res['machine']['cpu']}, {res['machine']['cores']} cores, "
        f"{res['machine']['ram_gb']} GB RAM, Python {res['machine']['python']}; load average "
        f"(1 min) {res['load_start']} at the start, {res['load_end']} at the end; the machine is "
        "shared with other jobs, so wall times move with their load.",
    ]
    if "scaled" in res:
        sc, sr = res["scaled"], res["scaled_rerun"]
        lines += [
            "",
            f"At scale {res['scale']:g} (the demo CRM {res['scale']:g} times over, "
            f"`{res['scaled_source']}`): {sc['reports']} reports, warm kernels, "
            f"{sc['wall_s']:.1f} s ({sc['wall_s'] / sc['reports']:.2f} s a report, median "
            f"{sc['per_report_median_s']:.2f} s per worker), peak {sc['peak_mb']:.0f} MB, "
            f"{sc['failed']} failed; unchanged rerun {sr['wall_s']:.1f} s "
            f"({sr['reused']} of {sr['reports']} reused).",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--period", default="2026-10")
    parser.add_argument("--source", default="data/demo.duckdb")
    parser.add_argument("--as-of", default="2026-11-05")
    parser.add_argument("--naive-n", type=int, default=6)
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument(
        "--scale",
        type=float,
        default=10,
        help="also render the month of the demo CRM at this scale, warm and rerun (0: skip)",
    )
    args = parser.parse_args()
    if not (ROOT / args.source).exists():
        subprocess.run(
            [PY, "-m", "kpi_lib", "demo-data", "--out", args.source, "--end", args.period],
            cwd=ROOT,
            check=True,
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    res = {"period": args.period, "machine": machine(), "load_start": load()}
    jobs = args.jobs or os.cpu_count()

    print("ours, fresh kernels ...", file=sys.stderr)
    res["fresh"] = {**ours(args, "fresh", "--force", "--fresh-kernels"), "jobs": jobs}
    print("ours, warm kernels ...", file=sys.stderr)
    res["warm"] = {**ours(args, "warm", "--force"), "jobs": jobs}
    print("ours, unchanged rerun ...", file=sys.stderr)
    res["rerun"] = {**ours(args, "rerun"), "jobs": jobs}
    plan = manifest_stats(WORK / "ours" / args.period)["plan"]
    res["reports"] = len(plan)
    roles = dict.fromkeys(r for r, _ in plan)
    res["roles"] = {role: sum(r == role for r, _ in plan) for role in roles}
    print(f"naive loop on {args.naive_n} reports ...", file=sys.stderr)
    res["naive"] = naive(args, plan)
    if args.scale:
        from cube import ensure_data  # bench/cube.py: the same file the cube bench times

        scaled = str(ensure_data(args.scale).relative_to(ROOT))
        print(f"ours, warm kernels, scale {args.scale:g} ...", file=sys.stderr)
        res["scale"], res["scaled_source"] = args.scale, scaled
        res["scaled"] = ours(args, "scaled", "--force", source=scaled, work="scaled")
        res["scaled_rerun"] = ours(args, "scaled rerun", source=scaled, work="scaled")
    res["load_end"] = load()

    (RESULTS / "render.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    text = markdown(res)
    (RESULTS / "render.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
