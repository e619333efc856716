"""The fault-injection table: runs the suite in `tests/faults/` (distributed mode: two servers, a
worker, PostgreSQL, Redis, the fake model streaming 200 words 20 ms apart) and prints one row
per scenario — the fault, the runs in flight, how many were lost, duplicated or left stuck, and
the recovery time (what each scenario measures is in its row's note).

    .venv/bin/python bench/faults.py                 # the whole suite, once
    .venv/bin/python bench/faults.py --runs 3        # three times, medians of the recovery
    .venv/bin/python bench/faults.py -k worker       # the scenarios matching a pytest -k

Needs PostgreSQL and Redis (as `scripts/test` does); each scenario starts services of its own
(redis-server, and a PostgreSQL cluster for the restart) on free ports. Exits 1 when a scenario
failed. Targets: 0 lost, 0 duplicated, 0 stuck in every row; recovery ≤ 5 s after a fault ends,
takeover of a dead executor's run ≤ 10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_suite(selection: str | None) -> tuple[int, list[dict[str, object]]]:
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "faults.jsonl"
        env = {
            **os.environ,
            "CONDUIT_TEST_MODE": "distributed",
            "CONDUIT_FAULTS_REPORT": str(report),
        }
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "tests/faults"]
        if selection:
            command += ["-k", selection]
        finished = subprocess.run(command, cwd=ROOT, env=env, check=False)
        rows = (
            [json.loads(line) for line in report.read_text().splitlines()]
            if report.exists()
            else []
        )
    return finished.returncode, rows


def table(runs: list[list[dict[str, object]]]) -> str:
    by_fault: dict[str, list[dict[str, object]]] = defaultdict(list)
    order: list[str] = []
    for rows in runs:
        for row in rows:
            fault = str(row["fault"])
            if fault not in by_fault:
                order.append(fault)
            by_fault[fault].append(row)
    lines = [
        "| fault | runs in flight | lost | duplicated | stuck | recovery (s) | note |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for fault in order:
        rows = by_fault[fault]
        recovery = statistics.median(float(str(r["recovery_s"])) for r in rows)
        spread = ""
        if len(rows) > 1:
            values = sorted(float(str(r["recovery_s"])) for r in rows)
            spread = f" ({values[0]:g}–{values[-1]:g})"
        worst = {
            key: max(int(str(r[key])) for r in rows) for key in ("lost", "duplicated", "stuck")
        }
        lines.append(
            f"| {fault} | {rows[-1]['in_flight']} | {worst['lost']} | {worst['duplicated']} | "
            f"{worst['stuck']} | {recovery:g}{spread} | {rows[-1]['note']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1, help="times to run the suite (medians)")
    parser.add_argument("-k", dest="selection", default=None, help="pytest -k expression")
    args = parser.parse_args()
    failed = False
    runs: list[list[dict[str, object]]] = []
    for _ in range(args.runs):
        code, rows = run_suite(args.selection)
        failed = failed or code != 0
        runs.append(rows)
    print()
    print(table(runs))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
