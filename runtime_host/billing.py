"""What an invocation is billed, and the REPORT line that says so.

Owns: Billed Duration (1 ms granularity, rounded up) and the REPORT line in
Lambda's exact text format (spec §5.2, §5.3).
Rule implemented for INIT: AWS bills the INIT phase for every configuration
since 1 Aug 2025, so on a cold start Billed Duration = ceil(Init Duration +
Duration).
Must not: measure anything itself; callers pass the figures in.
"""
from __future__ import annotations

import math


def billed_duration_ms(duration_ms: float, init_duration_ms: float | None) -> int:
    return max(1, math.ceil(duration_ms + (init_duration_ms or 0.0)))


def report_line(request_id: str, duration_ms: float, memory_mb: int, max_memory_used_mb: int,
                init_duration_ms: float | None = None, status: str = "success",
                error_type: str | None = None) -> str:
    """`REPORT RequestId: ...` with tab-separated fields and the trailing tab
    AWS writes; failed invokes add `Status:` (and `Error Type:`) as the current
    platform does."""
    fields = [
        f"REPORT RequestId: {request_id}",
        f"Duration: {duration_ms:.2f} ms",
        f"Billed Duration: {billed_duration_ms(duration_ms, init_duration_ms)} ms",
        f"Memory Size: {memory_mb} MB",
        f"Max Memory Used: {max_memory_used_mb} MB",
    ]
    if init_duration_ms is not None:
        fields.append(f"Init Duration: {init_duration_ms:.2f} ms")
    if status != "success":
        fields.append(f"Status: {status}")
        if error_type and status == "error":
            fields.append(f"Error Type: {error_type}")
    return "\t".join(fields) + "\t"
