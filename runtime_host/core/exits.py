"""How a runtime's end is worded, as RAPID (written in Go) words it (spec §3.4).

Owns: the text of `Runtime.ExitError` / `Runtime.OutOfMemory` details from an
exit status, and which platform error an exit is.
Must not: learn how a container ended (the backend reports ExitInfo).
"""
from __future__ import annotations

from runtime_host.core.protocol import RUNTIME_EXIT_ERROR, RUNTIME_OUT_OF_MEMORY

# Go's names for signals (RAPID is written in Go and prints them).
SIGNAL_NAMES = {1: "hangup", 2: "interrupt", 3: "quit", 4: "illegal instruction", 5: "trace/breakpoint trap",
                6: "aborted", 7: "bus error", 8: "floating point exception", 9: "killed",
                10: "user defined signal 1", 11: "segmentation fault", 12: "user defined signal 2",
                13: "broken pipe", 14: "alarm clock", 15: "terminated"}
MAX_SIGNAL = 64
SIGKILL_EXIT_CODE = 128 + 9


def describe_exit(exit_code: int) -> str:
    """Go's wording, as RAPID prints it (spec §3.4)."""
    if 128 < exit_code <= 128 + MAX_SIGNAL:      # a shell's way to say "killed by signal N"
        sig = exit_code - 128
        return f"Runtime exited with error: signal: {SIGNAL_NAMES.get(sig, f'signal {sig}')}"
    if exit_code == 0:
        return "Runtime exited without providing a reason"
    return f"Runtime exited with error: exit status {exit_code}"


def exit_error_type(oom_killed: bool) -> str:
    return RUNTIME_OUT_OF_MEMORY if oom_killed else RUNTIME_EXIT_ERROR
