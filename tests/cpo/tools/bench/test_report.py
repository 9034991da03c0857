"""The benchmark's report: the table on stdout and the JSON file with every figure."""

from __future__ import annotations

import json

from cpo.tools.bench import report


def _server(cpu_per_1000: float, p99: float) -> dict[str, object]:
    return {
        "server": "x",
        "storm": {
            "stations": 100,
            "accepted": 100,
            "ready": 100,
            "all_accepted_s": 1.5,
            "all_ready_s": 2.0,
            "failed_handshakes": 0,
            "boot_p50_ms": 10.0,
            "boot_p99_ms": 40.0,
            "failure_reasons": {},
        },
        "memory": {"kib_per_connection": 30.0, "rss_connected_mib": 90.0},
        "steady": {
            "target_rate": 50.0,
            "achieved_rate": 49.5,
            "duration_s": 10.0,
            "latency": {"p50_ms": 3.0, "p99_ms": p99, "max_ms": 90.0},
            "timeouts": {},
            "call_errors": {},
            "server_cpu_s_per_1000": cpu_per_1000,
        },
        "acknowledged": {"status_events": 300, "sessions": 20, "samples": 600},
    }


def test_report_renders_the_table_and_the_json(tmp_path):
    ours = _server(1.5, 45.0) | {
        "persisted": {"status_events": 300, "sessions": 20, "samples": 600},
        "rows_equal": True,
    }
    results = {
        "run": "T1",
        "database": "sqlite3 x",
        "redis": "embedded",
        "ours": ours,
        "ceiling": _server(0.5, 5.0),
    }
    table = report.render(results)
    assert "ours/ceiling" in table
    cpu_row = next(line for line in table.splitlines() if line.startswith("Server CPU s per"))
    assert " 3 " in cpu_row  # 1.5 / 0.5: over twice the ceiling
    assert cpu_row.endswith("no")
    rows_row = next(line for line in table.splitlines() if line.startswith("Rows: meter"))
    assert "600 / 600" in rows_row
    path = report.write_json(results, tmp_path)
    saved = json.loads(path.read_text())
    assert saved["ratios"]["steady.server_cpu_s_per_1000"] == 3.0
    assert saved["ratios"]["steady.latency.p99_ms"] == 9.0
