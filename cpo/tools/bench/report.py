"""The benchmark's table on stdout and its JSON file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _get(data: dict[str, Any], path: str) -> Any:
    for key in path.split("."):
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _ratio(ours: Any, ceiling: Any) -> float | None:
    if isinstance(ours, int | float) and isinstance(ceiling, int | float) and ceiling:
        return round(ours / ceiling, 2)
    return None


# (label, path in a server's results, target text, check(value, results) -> met or None)
ROWS: list[tuple[str, str, str, Any]] = [
    ("Stations", "storm.stations", "10,000", lambda v, r: v >= 10_000),
    (
        "Boot storm: all accepted (s)",
        "storm.all_accepted_s",
        "<= 30 s (10k)",
        lambda v, r: v is not None and v <= 30 and r["storm"]["stations"] >= 10_000,
    ),
    ("Boot storm: all statuses answered (s)", "storm.all_ready_s", "", None),
    ("Boot storm: failed handshakes", "storm.failed_handshakes", "0", lambda v, r: v == 0),
    ("Boot storm: stations not ready", "storm.not_ready", "0", lambda v, r: v == 0),
    ("Boot latency p50 (ms)", "storm.boot_p50_ms", "", None),
    ("Boot latency p99 (ms)", "storm.boot_p99_ms", "", None),
    (
        "Memory per connection (KiB)",
        "memory.kib_per_connection",
        "<= 40",
        lambda v, r: v is not None and v <= 40,
    ),
    ("Server RSS, all connected (MiB)", "memory.rss_connected_mib", "", None),
    ("Steady: offered (msg/s)", "steady.target_rate", "1,000", None),
    (
        "Steady: achieved (msg/s)",
        "steady.achieved_rate",
        ">= 1,000",
        lambda v, r: v is not None and v >= 1000,
    ),
    ("Steady: duration (s)", "steady.duration_s", "600", None),
    # From when each message was due on the schedule, queueing behind the station's previous
    # CALL included, to its answer.
    ("Latency from due p50 (ms)", "steady.latency.p50_ms", "", None),
    (
        "Latency from due p99 (ms)",
        "steady.latency.p99_ms",
        "<= 50",
        lambda v, r: v is not None and v <= 50,
    ),
    ("Latency from due max (ms)", "steady.latency.max_ms", "", None),
    ("Timeouts + CALLERRORs", "steady.failures", "0", lambda v, r: v == 0),
    (
        "Back-office CPU s per 1,000 msg (daphne, worker, PostgreSQL, Redis)",
        "steady.back_office_cpu_s_per_1000",
        "<= 2x ceiling",
        None,
    ),
    ("daphne CPU s per 1,000 msg", "steady.server_cpu_s_per_1000", "", None),
    ("Server CPU share of one core", "steady.server_cpu_share", "", None),
    ("Celery worker CPU s", "steady.worker_cpu_s", "", None),
    ("Database + Redis CPU s", "steady.database_redis_cpu_s", "", None),
    ("Simulator CPU s", "steady.simulator_cpu_s", "", None),
    ("Simulator CPU s per 1,000 msg", "steady.simulator_cpu_s_per_1000", "", None),
    ("Machine busy (share of all cores)", "steady.machine_busy_share", "", None),
    ("CPU s used by other work on the box", "steady.other_cpu_s", "", None),
    ("Rows: status events ack / stored", "rows.status_events", "equal", None),
    ("Rows: sessions ack / stored", "rows.sessions", "equal", None),
    ("Rows: meter samples ack / stored", "rows.samples", "equal", None),
    ("Rows stored equal rows acknowledged", "rows_equal", "yes", lambda v, r: v is True),
    (
        "Acknowledged transactions not found, of checked",
        "acknowledged_missing.transactions",
        "0",
        None,
    ),
    (
        "Acknowledged meter values not found, of checked",
        "acknowledged_missing.meter_values",
        "0",
        None,
    ),
]


def _derive(server: dict[str, Any]) -> dict[str, Any]:
    """Add the figures the table shows that are sums or pairs of measured ones."""
    data = json.loads(json.dumps(server))
    storm = data.get("storm", {})
    storm["not_ready"] = storm.get("stations", 0) - storm.get("ready", 0)
    steady = data.get("steady", {})
    if steady:
        steady["failures"] = sum(steady.get("timeouts", {}).values()) + sum(
            steady.get("call_errors", {}).values()
        )
    missing = data.get("acknowledged_missing")
    if missing:
        for kind in ("transactions", "meter_values"):
            data["acknowledged_missing"][kind] = (
                f"{missing[f'{kind}_missing']:,} of {missing[f'{kind}_checked']:,}"
            )
    if "persisted" in data:
        data["rows"] = {
            key: f"{data['acknowledged'][key]:,} / {data['persisted'][key]:,}"
            for key in ("status_events", "sessions", "samples")
        }
    return data


def ratios(results: dict[str, Any]) -> dict[str, float | None]:
    ours, ceiling = results.get("ours", {}), results.get("ceiling", {})
    return {
        path: _ratio(_get(ours, path), _get(ceiling, path))
        for path in (
            "steady.back_office_cpu_s_per_1000",
            "steady.server_cpu_s_per_1000",
            "steady.achieved_rate",
            "steady.latency.p50_ms",
            "steady.latency.p99_ms",
            "storm.all_accepted_s",
            "storm.boot_p99_ms",
            "memory.kib_per_connection",
        )
    }


def render(results: dict[str, Any]) -> str:
    """The table: one row per figure, ours, the ceiling, their ratio, the target and verdict."""
    ours = _derive(results.get("ours", {}))
    ceiling = _derive(results.get("ceiling", {})) if results.get("ceiling") else {}
    headers = ["", "back office", "ceiling", "ours/ceiling", "target", "met"]
    table = [headers]
    for label, path, target, check in ROWS:
        value = _get(ours, path)
        other = _get(ceiling, path) if ceiling else None
        met = ""
        if check is not None and value is not None:
            met = "yes" if check(value, ours) else "no"
        if path.startswith("acknowledged_missing.") and value is not None:
            met = "yes" if str(value).startswith("0 of") else "no"
        if path == "steady.back_office_cpu_s_per_1000":
            ratio = _ratio(value, other)
            met = "" if ratio is None else ("yes" if ratio <= 2 else "no")
        table.append([label, _fmt(value), _fmt(other), _fmt(_ratio(value, other)), target, met])
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    lines = [
        f"OCPP load benchmark, run {results.get('run', '?')}: "
        f"{results.get('database', '?')}, Redis {results.get('redis', '?')}",
        f"{results.get('machine', {}).get('cpus', '?')} CPUs, "
        f"{results.get('simulator_processes', '?')} simulator processes on the same machine",
        "",
    ]
    for n, row in enumerate(table):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    notes = []
    for name, data in (("back office", ours), ("ceiling", ceiling)):
        for key in ("failure_reasons", "call_errors", "timeouts"):
            value = _get(data, f"storm.{key}")
            if value:
                notes.append(f"{name} storm {key}: {value}")
        for key in ("call_errors", "timeouts"):
            value = _get(data, f"steady.{key}")
            if value and any(value.values()):
                notes.append(f"{name} steady {key}: {value}")
        if data.get("schema_violations"):
            notes.append(f"{name} schema violations: {data['schema_violations'][:3]}")
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)


def write_json(results: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    results = dict(results, ratios=ratios(results))
    path = out_dir / f"bench-{results.get('run', 'run')}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return path
