"""What an invocation is billed, and the REPORT line that says so.

Owns: Billed Duration (1 ms granularity, rounded up) and the REPORT line in
Lambda's exact text format (spec §5.2, §5.3).
Rule implemented for INIT: AWS bills the INIT phase for every configuration
since 1 Aug 2025, so on a cold start Billed Duration = ceil(Init Duration +
Duration).
Also the price table (prices.toml beside this file, overridable) and the
cost of an invocation: GB-seconds times the price per GB-second, plus the
per-request price.
Must not: measure anything itself; callers pass the figures in.
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path


def billed_duration_ms(duration_ms: float, init_duration_ms: float | None) -> int:
    """Rounded up to the next 1 ms from the figures as REPORT shows them (two
    decimals), so that Duration + Init Duration on the line adds up to the
    Billed Duration a reader expects (15.12 + 4.88 bills 20, whatever the
    third decimal was). Summed in whole hundredths: float sums like
    15.12 + 4.88 = 20.000000000000004 would round up a whole extra ms."""
    hundredths = round(duration_ms * 100) + round((init_duration_ms or 0.0) * 100)
    return max(1, -(-hundredths // 100))


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


def bytes_to_mb_rounded_up(n: int) -> int:
    """Lambda prints whole MB; a partly used MB counts as used."""
    return math.ceil(n / (1024 * 1024))


# --- prices -----------------------------------------------------------------------
DEFAULT_PRICES = Path(__file__).with_name("prices.toml")
ARCHITECTURES = ("x86_64", "arm64")
PRICE_FIELDS = ("gb_second_usd", "request_usd")


class PriceTableError(ValueError):
    """The price table cannot be used; the message names the file and the line or field."""


@dataclass(frozen=True)
class Price:
    gb_second_usd: float
    request_usd: float


def load_prices(path: Path | None = None) -> dict[str, Price]:
    path = Path(path) if path else DEFAULT_PRICES
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PriceTableError(f"{path}: cannot be read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:     # its message carries "(at line N, column M)"
        raise PriceTableError(f"{path}: not valid TOML: {exc}") from None
    prices = {}
    for arch in ARCHITECTURES:
        table = raw.get(arch)
        if not isinstance(table, dict):
            raise PriceTableError(f"{path}: missing the table [{arch}] with {' and '.join(PRICE_FIELDS)}")
        for name in PRICE_FIELDS:
            value = table.get(name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise PriceTableError(f"{path}: [{arch}] {name} = {value!r} is not allowed; "
                                      "expected a price in USD, a number >= 0")
        prices[arch] = Price(float(table["gb_second_usd"]), float(table["request_usd"]))
    return prices


def gb_seconds(billed_ms: int, memory_mb: int) -> float:
    return billed_ms / 1000 * memory_mb / 1024


def cost_usd(billed_ms: int, memory_mb: int, price: Price) -> float:
    """One request plus its GB-seconds (spec §5.2)."""
    return gb_seconds(billed_ms, memory_mb) * price.gb_second_usd + price.request_usd
