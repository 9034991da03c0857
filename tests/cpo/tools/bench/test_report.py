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
            "server_cpu_s_per_1000": cpu_per_1000 / 2,
            "back_office_cpu_s_per_1000": cpu_per_1000,
        },
        "acknowledged": {"status_events": 300, "sessions": 20, "samples": 600},
    }


def test_report_renders_the_table_and_the_json(tmp_path):
    ours = _server(1.5, 45.0) | {
        "persisted": {"status_events": 300, "sessions": 20, "samples": 600},
        "rows_equal": True,
        "acknowledged_missing": {
            "transactions_checked": 20,
            "transactions_missing": 0,
            "meter_values_checked": 200,
            "meter_values_missing": 1,
            "examples": ["B-1\t2026-12-02T00:00:00.000Z\t3"],
        },
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
    cpu_row = next(line for line in table.splitlines() if line.startswith("Back-office CPU s"))
    assert " 3 " in cpu_row  # 1.5 / 0.5: over twice the ceiling
    assert cpu_row.endswith("no")
    lines = table.splitlines()
    transactions = next(line for line in lines if line.startswith("Acknowledged transactions"))
    assert "0 of 20" in transactions
    assert transactions.endswith("yes")
    samples = next(line for line in lines if line.startswith("Acknowledged meter values"))
    assert "1 of 200" in samples  # one acknowledged meter value not found: the check fails
    assert samples.endswith("no")
    rows_row = next(line for line in table.splitlines() if line.startswith("Rows: meter"))
    assert "600 / 600" in rows_row
    path = report.write_json(results, tmp_path)
    saved = json.loads(path.read_text())
    assert saved["ratios"]["steady.back_office_cpu_s_per_1000"] == 3.0
    assert saved["ratios"]["steady.latency.p99_ms"] == 9.0
