"""The console's per-function charts: the last hour of the billing ledger as
small inline SVG, drawn here by hand (no chart library, nothing from a CDN).

Owns: bucketing ledger records into minutes (invocations, errors, cold
starts, p50/p99 duration by nearest rank, as `runtime-host billing` ranks)
and drawing those series as SVG text.
Must not: read the ledger (the console reads it in a thread and passes the
records in) or know HTTP.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from runtime_host.api.console.html import Markup, esc
from runtime_host.store.ledger import Record

WINDOW_S = 3600            # the last hour
BUCKET_S = 60              # one bar or point a minute
BUCKETS = WINDOW_S // BUCKET_S
WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 320, 110, 40, 16, 18


@dataclass
class Series:
    """One function's last hour, a value per minute, oldest first."""
    start_epoch: float
    invocations: list[int]
    errors: list[int]
    cold_starts: list[int]
    p50_ms: list[float | None]
    p99_ms: list[float | None]

    @property
    def total(self) -> int:
        return sum(self.invocations)


def _nearest_rank(sorted_values: list[float], percent: float) -> float:
    return sorted_values[max(1, math.ceil(percent / 100 * len(sorted_values))) - 1]


def bucket(records: list[Record], now_epoch: float) -> Series:
    # Buckets end at the next whole minute, so a minute's bar stays put as time passes.
    end = (math.floor(now_epoch / BUCKET_S) + 1) * BUCKET_S
    start = end - WINDOW_S
    durations: list[list[float]] = [[] for _ in range(BUCKETS)]
    series = Series(start, [0] * BUCKETS, [0] * BUCKETS, [0] * BUCKETS, [None] * BUCKETS, [None] * BUCKETS)
    for r in records:
        i = int((r.started_at - start) // BUCKET_S)
        if not 0 <= i < BUCKETS:
            continue
        series.invocations[i] += 1
        series.errors[i] += r.outcome != "success"
        series.cold_starts[i] += bool(r.cold)
        durations[i].append(r.duration_ms)
    for i, values in enumerate(durations):
        if values:
            values.sort()
            series.p50_ms[i] = _nearest_rank(values, 50)
            series.p99_ms[i] = _nearest_rank(values, 99)
    return series


def _nice_max(value: float) -> float:
    """The axis's top: 1, 2 or 5 times a power of ten, at least value."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def _fmt(value: float) -> str:
    return f"{value:g}" if value < 10000 else f"{value:.0f}"


def _frame(title: str, top: float, unit: str, legend: list[tuple[str, str]]) -> list[str]:
    plot_w, plot_h = WIDTH - PAD_LEFT - 4, HEIGHT - PAD_BOTTOM - PAD_TOP
    parts = [f'<text x="{PAD_LEFT}" y="12" class="title">{esc(title)}</text>']
    x = WIDTH - 4
    for label, css in reversed(legend):
        parts.append(f'<text x="{x}" y="12" text-anchor="end" class="{css}">{esc(label)}</text>')
        x -= 8 * len(label) + 10
    parts += [f'<line x1="{PAD_LEFT}" y1="{PAD_TOP}" x2="{PAD_LEFT}" y2="{PAD_TOP + plot_h}" class="axis"/>',
              f'<line x1="{PAD_LEFT}" y1="{PAD_TOP + plot_h}" x2="{PAD_LEFT + plot_w}" y2="{PAD_TOP + plot_h}" class="axis"/>',
              f'<text x="{PAD_LEFT - 4}" y="{PAD_TOP + 8}" text-anchor="end">{esc(_fmt(top))}{esc(unit)}</text>',
              f'<text x="{PAD_LEFT - 4}" y="{PAD_TOP + plot_h}" text-anchor="end">0</text>',
              f'<text x="{PAD_LEFT}" y="{HEIGHT - 3}">-60 min</text>',
              f'<text x="{PAD_LEFT + plot_w}" y="{HEIGHT - 3}" text-anchor="end">now</text>']
    return parts


def _svg(parts: list[str], name: str, label: str) -> Markup:
    return Markup(f'<svg class="chart" data-chart="{esc(name)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
                  f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{esc(label)}">'
                  + "".join(parts) + "</svg>")


def bars(name: str, title: str, layers: list[tuple[list[int], str, str]]) -> Markup:
    """Bars per minute; later layers drawn over earlier ones (errors over invocations)."""
    top = _nice_max(max((max(values) for values, _, _ in layers), default=0))
    plot_w, plot_h = WIDTH - PAD_LEFT - 4, HEIGHT - PAD_BOTTOM - PAD_TOP
    step = plot_w / BUCKETS
    parts = _frame(title, top, "", [(label, css) for _, label, css in layers])
    for values, _, css in layers:
        for i, v in enumerate(values):
            if v:
                h = max(1.0, v / top * plot_h)
                parts.append(f'<rect x="{PAD_LEFT + i * step + 0.5:.1f}" y="{PAD_TOP + plot_h - h:.1f}" '
                             f'width="{max(step - 1, 1):.1f}" height="{h:.1f}" class="{css}"><title>{v}</title></rect>')
    label = f"{title}: " + ", ".join(f"{lbl} {sum(values)}" for values, lbl, _ in layers) + " in the last hour"
    return _svg(parts, name, label)


def lines(name: str, title: str, layers: list[tuple[list[float | None], str, str]], unit: str) -> Markup:
    """A point per minute that has a value, joined within runs of minutes that have one."""
    top = _nice_max(max((v for values, _, _ in layers for v in values if v is not None), default=0))
    plot_w, plot_h = WIDTH - PAD_LEFT - 4, HEIGHT - PAD_BOTTOM - PAD_TOP
    step = plot_w / BUCKETS
    parts = _frame(title, top, unit, [(label, css) for _, label, css in layers])
    for values, _, css in layers:
        points = [(PAD_LEFT + (i + 0.5) * step, PAD_TOP + plot_h - v / top * plot_h, v)
                  for i, v in enumerate(values) if v is not None]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in points)
            parts.append(f'<polyline points="{path}" class="{css}"/>')
        for x, y, v in points:
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2" class="{css}"><title>{v:.2f} {esc(unit)}</title></circle>')
    return _svg(parts, name, f"{title} over the last hour")


def render(series: Series) -> Markup:
    """The four charts of one function, and how many invocations they count (the test reads it)."""
    return Markup(
        f'<div class="charts" data-invocations="{series.total}">'
        + bars("invocations", "Invocations and errors",
               [(series.invocations, "invocations", "inv"), (series.errors, "errors", "err")])
        + lines("duration", "Duration", [(series.p50_ms, "p50", "p50"), (series.p99_ms, "p99", "p99")], " ms")
        + bars("cold", "Cold starts", [(series.cold_starts, "cold starts", "cold")])
        + "</div>")
