"""`make bench`: every benchmark, one table, the figures as JSON under
bench/results/ with the machine and the date, and a chart (PNG). Speed is
only ever compared with references measured in the same run (ratios to the
AWS Runtime Interface Emulator and to physical floors), never asserted.

    python bench/run.py [--smoke] [--only warm,rie,...] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cold  # noqa: E402
import extensions  # noqa: E402
import ledger  # noqa: E402
import metrics  # noqa: E402
import oneshot  # noqa: E402
import payload  # noqa: E402
import rie  # noqa: E402
import runtimes  # noqa: E402
import scale  # noqa: E402
import stop  # noqa: E402
import stream  # noqa: E402
import throughput  # noqa: E402
import warm  # noqa: E402
from common import REPO, machine  # noqa: E402

BENCHMARKS = {"warm": warm, "rie": rie, "cold": cold, "throughput": throughput, "scale": scale,
              "payload": payload, "ledger": ledger, "stream": stream, "extensions": extensions, "metrics": metrics,
              "runtimes": runtimes, "oneshot": oneshot, "stop": stop}


def run_one(name: str, smoke: bool) -> dict:
    module = BENCHMARKS[name]
    if name == "rie":
        return rie.run(30 if smoke else 2000, 10 if smoke else 200, smoke=smoke)
    if name == "stream":
        return stream.run(3 if smoke else 10, smoke=smoke)
    if name == "extensions":
        return extensions.run(30, 10, smoke=True) if smoke else extensions.run()
    if name == "metrics":
        return metrics.run(60, 10, smoke=True) if smoke else metrics.run()
    if name == "runtimes":
        return runtimes.run(3, 30, 5) if smoke else runtimes.run()
    if name == "oneshot":
        return oneshot.run(smoke=smoke)
    if name == "stop":
        return stop.run(smoke=smoke)
    return module.run(**({"n": 30, "warmup": 10} if smoke else {}))


def row(label: str, s: dict, ref: float | None = None, extra: str = "") -> str:
    ratio = f"{s['p50'] / ref:9.2f}x" if ref else " " * 10
    return f"  {label:44} {s['p50']:9.3f} {s['p90']:9.3f} {s['p99']:9.3f} {ratio} {extra}"


def header(title: str, ref_name: str) -> None:
    print(f"\n{title}")
    print(f"  {'':44} {'p50':>9} {'p90':>9} {'p99':>9} {'p50/' + ref_name:>10}")


def report(r: dict) -> list[str]:
    """Prints every table; returns the target lines (also kept in the JSON)."""
    targets = []
    rie_r = r.get("rie")
    if "warm" in r:
        w = r["warm"]
        paired = w["rie_back_to_back"]            # measured in the same rounds as ours
        ref = paired["p50"]
        header("1. Warm invoke latency (ms): 100-byte event, python handler, sequential, one keep-alive connection",
               "RIE")
        print(row(f"RIE + awslambdaric, {w['turns']} turns of {w['block']} with ours", paired, ref))
        if rie_r:
            print(row("RIE + awslambdaric, alone, another minute", rie_r["warm"], ref))
        print(row("floor: bare aiohttp request/response, loopback", w["floor_loopback_aiohttp"], ref))
        for key in ("freeze_on_back_to_back", "freeze_off_back_to_back"):
            print(row("ours, " + key.replace("_", " "), w[key], ref, f"freezes/inv {w[key]['freezes_per_invocation']:.2f}"))
        gap_ref = w["rie_idle_gap"]
        print(f"  idle gap of {w['idle_gap_ms']:.0f} ms before every call (p50/RIE: to RIE after the same gap)")
        print(row("RIE + awslambdaric, idle gap", gap_ref, gap_ref["p50"]))
        for key in ("freeze_on_idle_gap", "freeze_off_idle_gap"):
            print(row("ours, " + key.replace("_", " "), w[key], gap_ref["p50"],
                      f"freezes/inv {w[key]['freezes_per_invocation']:.2f}"))
        print(f"  freeze+thaw cost at p50: back to back {w['freeze_thaw_cost_p50_ms_back_to_back']:+.3f} ms, "
              f"every call thawing {w['freeze_thaw_cost_p50_ms_idle_gap']:+.3f} ms (target <= 0.3 ms)")
        targets.append(f"freeze+thaw adds {w['freeze_thaw_cost_p50_ms_idle_gap']:+.3f} ms to warm p50 (target <= 0.3)")
        pr = w["paired_ratio_back_to_back"]
        print(f"  ours (freeze on) / RIE, turn by turn: median {pr['median']:.2f}x over {pr['turns']} turns "
              f"(from {pr['min']:.2f}x to {pr['max']:.2f}x)")
        alone = (f"; against RIE alone in another minute: {w['freeze_on_back_to_back']['p50'] / rie_r['warm']['p50']:.2f}x"
                 if rie_r else "")
        targets.append(f"warm p50 {pr['median']:.2f}x RIE's, the median of {pr['turns']} paired turns "
                       f"({pr['min']:.2f}x-{pr['max']:.2f}x){alone} (target <= 0.8)")
    if "cold" in r:
        c = r["cold"]
        ref = rie_r["cold"]["p50"] if rie_r else None
        header("2. Cold start (ms): invoke call to first response, no sandbox of the function running", "RIE" if ref else "-")
        if rie_r:
            print(row("RIE: docker run (host network) to first answer", rie_r["cold"], ref))
        print(row("floor: docker run --rm, host network", c["floor_docker_run_host_network"], ref))
        print(row("floor: docker run --rm, bridge", c["floor_docker_run_bridge"], ref))
        print(row("ours, stem cells (default)", c["ours_stem_cells"], ref))
        print(row("ours, no stem cells (container started)", c["ours_no_stem_cells"], ref))
        print(row("ours, stem cells, function with 2 layers", c["ours_stem_cells_two_layers"], ref))
        if ref:
            targets.append(f"cold start p50 {c['ours_stem_cells']['p50'] / ref:.2f}x RIE's (target <= 0.5)")
    if "runtimes" in r:
        rt = r["runtimes"]
        per = {k: v for k, v in rt.items() if isinstance(v, dict) and "warm" in v}
        ref = per.get("python3.11")
        header(f"2b. Per runtime (ms): the example handler at {rt['memory_mb']} MB, cold start with stem cells "
               "and warm sequential", "py3.11")
        for key in ("cold_stem_cells", "warm"):
            for runtime, s in per.items():
                print(row(f"{runtime}, {key.replace('_', ' ')}", s[key], ref[key]["p50"] if ref else None))
    if "throughput" in r:
        t = r["throughput"]
        print("\n3. Throughput: concurrent callers, each sequential on its own connection")
        print(f"  {'':44} {'inv/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'failed':>7}")
        for key, s in ((k, v) for k, v in t.items() if k.startswith("ours_")):
            print(f"  {'ours, ' + str(s['callers']) + ' caller(s), one host':44} {s['invocations_per_s']:9.0f} "
                  f"{s['p50']:9.3f} {s['p99']:9.3f} {s['failed']:7d}")
        if rie_r:
            for c_, s in rie_r["throughput"].items():
                print(f"  {'RIE, ' + c_ + ' container(s), one caller each':44} {s['invocations_per_s']:9.0f} "
                      f"{s['latency']['p50']:9.3f} {s['latency']['p99']:9.3f} {'-':>7}")
            oc = rie_r.get("one_container_concurrent", {})
            print(f"  RIE, one container, {oc.get('callers', 2)} callers at once: {json.dumps(oc)[:300]}")
        paired = t.get("paired_with_rie")
        if paired:
            print(f"  paired, {paired['callers']} callers, {paired['rounds']} alternating rounds of "
                  f"{paired['seconds_per_round']} s: ours {paired['ours_per_s']}/s, RIE fleet {paired['rie_per_s']}/s "
                  f"-> {paired['ratio']:.2f}x")
            ours = [v for k, v in t.items() if k.startswith("ours_")]
            failed = sum(v["failed"] for v in ours)
            at = ", ".join(str(v["callers"]) for v in ours)
            targets.append(f"throughput with {paired['callers']} callers {paired['ratio']:.2f}x a fleet of "
                           f"{paired['callers']} RIE containers, paired rounds (target >= 1.2); "
                           f"failed invocations at {at} callers: {failed} (target 0)")
    if "scale" in r:
        s = r["scale"]
        header("4. Scale: warm latency (ms) of one function while N other sandboxes are held frozen", "fewest")
        levels = [k for k in s if k.startswith("held_")]
        base = s[levels[0]]["p50"]
        for k in levels:
            v = s[k]
            print(row(f"{v['held']} held ({v['frozen']} frozen), host RSS {v['host_rss_mb']} MB", v, base,
                      f"container {v['container_memory_mb_avg']:.1f} MB/sandbox"))
        most = s[levels[-1]]["held"]
        again = s["fewest_again"]
        print(row(f"{again['held']} held again, after the {most} were removed", again, base))
        measured = {s[k]["held"]: s[k] for k in levels} | {"again": again}
        for label, v in measured.items():
            print(row(f"control host (holds nothing), turns with {label}", v["control"], base))
        for k in levels:
            idle = s[k]["idle"]
            print(f"  idle, {s[k]['held']} held: Docker's {idle['docker_processes']} processes use "
                  f"{idle['docker_cores']:.3f} cores, the host {idle['host_cores']:.3f}")
        print(f"  host RSS growth per idle sandbox: {s['host_rss_mb_per_sandbox'] * 1024:.0f} KB (target <= 1 MB)")
        print(f"  the {most} held sandboxes were removed in {s['removal_s']} s; "
              f"the machine settled {s['settle_s']} s before the last measurement")
        for label, v in measured.items():
            tc = v["to_control"]
            print(f"  {label if label == 'again' else f'{label} held'}: measured host / control, turn by turn: median {tc['median']:.2f}x "
                  f"({tc['min']:.2f}x-{tc['max']:.2f}x, {tc['turns']} turns)")
        targets.append(f"warm p50 with {most} frozen sandboxes "
                       f"{s['p50_ratio_most_to_fewest_before_and_after']:.2f}x the mean of that with none "
                       f"before and after (A-B-A; against before only: {s['p50_ratio_most_to_fewest']:.2f}x; "
                       f"the host's own, turn by turn against the control: "
                       f"{s['p50_ratio_most_to_fewest_control_corrected']:.2f}x) (target <= 1.1 at 500)")
        targets.append(f"host RSS per idle sandbox {s['host_rss_mb_per_sandbox'] * 1024:.0f} KB (target <= 1024 KB)")
    if "payload" in r:
        p = r["payload"]
        header("5. Payload round trip (ms): the handler echoes the event", "RIE" if rie_r else "-")
        for key, s in ((k, v) for k, v in p.items() if k.startswith("ours_")):
            size = key.split("_", 1)[1]
            ref = rie_r["payload"][size]["p50"] if rie_r and size in rie_r.get("payload", {}) else None
            if ref:
                print(row(f"RIE, {int(size):,} bytes", rie_r["payload"][size], ref))
            print(row(f"ours, {int(size):,} bytes", s, ref))
    if "ledger" in r:
        g = r["ledger"]
        print("\n6. Billing ledger: a record handed over -> its future done on the loop "
              "(normal: journaled; full: committed with fsync) (ms)")
        print(f"  {'':44} {'p50':>9} {'p90':>9} {'p99':>9} {'records/s':>10}")
        for key in ("normal_x1", "normal_x32", "full_x1", "full_x32"):
            sync, conc = key.split("_x")
            s = g[key]
            print(f"  {f'synchronous={sync.upper()}, {conc} at once':44} {s['p50']:9.3f} {s['p90']:9.3f} "
                  f"{s['p99']:9.3f} {s['records_per_s']:10.0f}")
    if "stream" in r:
        targets.append(stream_report(r["stream"]))
    if "extensions" in r:
        targets.append(extensions_report(r["extensions"]))
    if "metrics" in r:
        targets.append(metrics_report(r["metrics"]))
    if "oneshot" in r:
        targets.append(oneshot_report(r["oneshot"]))
    if "stop" in r:
        targets.append(stop_report(r["stop"]))
    if targets:
        print("\nTargets (ratios in this run):")
        for line in targets:
            print("  - " + line)
    return targets


def stop_report(s: dict) -> str:
    """Section 11; returns its target line."""
    b = s["big"]
    print("\n11. Stopping a host (SIGTERM to exit, every container removed)")
    print(f"  holding {b['sandboxes']} sandboxes: {b['stop_s']:.1f} s; left: {b['containers_left']} containers, "
          f"{b['networks_left']} networks; engine answers: {b['engine_answers']}")
    r = s["rounds"]
    print(f"  {len(r)} stops in a row, {r[0]['sandboxes']} sandboxes each: at most {s['rounds_max_stop_s']:.1f} s; "
          f"all clean and the engine answering: {s['rounds_all_clean']}")
    return (f"stop with {b['sandboxes']} sandboxes {b['stop_s']:.1f} s (target <= 10); {len(r)} stops in a row "
            f"{'clean' if s['rounds_all_clean'] else 'NOT clean'}")


def oneshot_report(o: dict) -> str:
    """Section 10; returns its target line."""
    if "skipped" in o:
        print(f"\n10. One-shot run against `sam local invoke`: skipped ({o['skipped']})")
        return f"one-shot run: not measured ({o['skipped']})"
    print(f"\n10. One-shot run (s, wall time of the command): examples/hello-python, {o['sam']['n']} turns "
          "of ours / SAM / ours one-off")
    print(f"  {'':44} {'median':>9} {'min':>9} {'max':>9} {'/SAM':>10}")
    sam = o["sam"]["median_s"]
    for label, key in (("sam local invoke (cold every time)", "sam"),
                       ("runtime-host run --keep-warm 300 (make run)", "ours"),
                       ("runtime-host run --keep-warm 0 (one-off host)", "ours_one_off")):
        s = o[key]
        print(f"  {label:44} {s['median_s']:9.3f} {s['min_s']:9.3f} {s['max_s']:9.3f} {s['median_s'] / sam:9.2f}x")
    f = o["ours_first_run"]
    print(f"  {'first run, nothing running (starts the host)':44} {f['wall_s']:9.3f} {'':9} {'':9} "
          f"{f['wall_s'] / sam:9.2f}x  Init Duration {f['init_duration_ms']} ms")
    return (f"one-shot `make run` {o['ratio_ours_to_sam']:.2f}x `sam local invoke`'s median wall time "
            f"(first run with nothing running {o['ratio_first_run_to_sam']:.2f}x, one-off host "
            f"{o['ratio_one_off_to_sam']:.2f}x) (target <= 0.5)")


def metrics_report(m: dict) -> str:
    """Section 9; returns its target line."""
    header(f"9. Metrics: warm invoke (ms), bench-python, turns of {m['block']} calls without and with a scraper "
           f"polling GET /metrics every {m['scrape_interval_s']:.0f} s", "none")
    ref = m["no_scraper"]["p50"]
    print(row("no scraper", m["no_scraper"], ref))
    print(row(f"scraper every {m['scrape_interval_s']:.0f} s", m["scraper_1s"], ref,
              f"{m['p50_diff_ms']:+.3f} ms p50"))
    if m["scrape_ms"]:
        print(row(f"the scrape itself ({m['scrapes']} of {m['scrape_bytes']} bytes)", m["scrape_ms"]))
    lw = m["log_write"]
    print(f"  on the invoke path, per invocation: metrics {m['observe_us']:.2f} us (HostMetrics.observe); a log "
          f"line with its events-file entry {lw['with_events_file_us']:.2f} us (the plain log alone "
          f"{lw['plain_log_write_us']:.2f} us)")
    t = m["turn_p50_diff_ms"]
    return (f"metrics: warm p50 {m['no_scraper']['p50']:.3f} ms without a scraper, {m['scraper_1s']['p50']:.3f} ms "
            f"with one polling /metrics every {m['scrape_interval_s']:.0f} s ({m['p50_diff_ms']:+.3f} ms; turn by "
            f"turn median {t['median']:+.3f}, {t['min']:+.3f} to {t['max']:+.3f}); recording costs "
            f"{m['observe_us']:.2f} us per invocation")


def stream_report(s: dict) -> str:
    """Section 7; returns its target line."""
    ours, ref = s["ours"], s["rie"]
    sleep_ref, mib5_ref, over = ref["sleep"], ref["mib_5"], ref["mib_10"]
    header(f"7. Response streaming (ms): sh-stream (bash + curl, provided), ours by InvokeWithResponseStream, "
           f"RIE by Invoke; n={s['n']} each", "RIE")
    print(f"  handler writes 'first ', sleeps {s['sleep_s']} s, writes 'second'")
    print(row("RIE, first byte of the answer", sleep_ref["first"], sleep_ref["first"]["p50"],
              f"status {'/'.join(sleep_ref['statuses'])}, {sleep_ref['bytes']} bytes, {sleep_ref['content_type']}"))
    print(row("ours, first PayloadChunk's payload", ours["sleep"]["first"], sleep_ref["first"]["p50"],
              f"status 200 at {ours['sleep']['headers']['p50']:.3f} ms, {ours['sleep']['content_type']}"))
    print(row("RIE, last byte", sleep_ref["end"], sleep_ref["end"]["p50"]))
    print(row("ours, InvokeComplete", ours["sleep"]["end"], sleep_ref["end"]["p50"]))
    print("  a stream of 'x' as fast as the handler writes it, to the last byte")
    print(row("RIE, 5 MiB", mib5_ref["end"], mib5_ref["end"]["p50"],
              f"{mib5_ref['mib_per_s']:7.1f} MiB/s, status {'/'.join(mib5_ref['statuses'])}, "
              f"{mib5_ref['bytes']:,} bytes"))
    print(row("ours, 5 MiB (within the 6 MiB unshaped burst)", ours["mib_5"]["end"], mib5_ref["end"]["p50"],
              f"{ours['mib_5']['mib_per_s']:7.1f} MiB/s, first chunk at {ours['mib_5']['first']['p50']:.3f} ms"))
    floor = ours["mib_10"]["shaping_floor_s"]
    print(row("ours, 10 MiB (shaped past 6 MiB)", ours["mib_10"]["end"], None,
              f"{ours['mib_10']['mib_per_s']:7.1f} MiB/s; floor {floor:.0f} s at 2 MiB/s past 6 MiB, as on Lambda"))
    over_status = "/".join(over.get("statuses", {})) or "no answer"
    error_type = ""
    try:
        error_type = json.loads(over.get("body_head", ""))["errorType"]
    except (ValueError, KeyError, TypeError):
        pass
    print(f"  RIE, 10 MiB: status {over_status} ({over.get('probes')} calls) in {over.get('seconds_p50') or 0:.3f} s, "
          f"{over.get('bytes', 0)} bytes{', ' + error_type if error_type else ''}, "
          f"X-Amz-Function-Error {over.get('function_error_header') or 'absent'}; "
          f"a small call after it: {over['small_call_after'].get('status', over['small_call_after'].get('error'))}")
    print(f"  RIE answers at the end, all at once: status and headers at p50 {sleep_ref['headers']['p50']:.3f} ms, "
          f"the first body byte {sleep_ref['first_byte_after_headers_ms_p50']:.3f} ms after them, the last "
          f"{sleep_ref['end']['p50'] - sleep_ref['first']['p50']:.3f} ms after that")
    streamed = ours["sleep"]["first"]["p50"] < s["sleep_s"] * 1000
    return (f"stream: first byte p50 {s['ratios']['first_byte_p50']:.3f}x RIE's "
            f"({ours['sleep']['first']['p50']:.1f} ms vs {sleep_ref['first']['p50']:.1f} ms; before the handler's "
            f"{s['sleep_s']} s sleep ends: {'yes' if streamed else 'NO'}); "
            f"5 MiB {s['ratios']['mib_5_seconds_p50']:.2f}x RIE's seconds; 10 MiB {ours['mib_10']['mib_per_s']:.2f} MiB/s "
            f"({ours['mib_10']['end']['p50'] / 1000:.2f} s, shaping floor {floor:.0f} s); "
            f"RIE over 6,291,556 bytes: {over_status}{' ' + error_type if error_type else ''}")


def extensions_report(e: dict) -> str:
    """Section 8; returns its target line."""
    labels = {"plain": "no extension (bench-python)",
              "keepalive": "noop on one kept-alive connection",
              "noop": "noop: INVOKE, straight back to next",
              "quiet": "quiet-telemetry: + Telemetry API, no output",
              "telemetry": "py-telemetry: + a line per record"}
    cbc, turns, logs = e["call_by_call"], e["turns"], e["logs"]
    header("8. Extensions (ms): warm round trip, 100-byte event, python handler, one keep-alive connection per "
           "function, one host serving all; one external extension (Python, stdlib, no work of its own) or none",
           "plain")
    print(f"  call by call: {e['n']} rounds, a call to each function per round, the order shuffled round by round")
    ref = cbc["plain"]["p50"]
    for label, s in cbc.items():
        extra = "" if label == "plain" else f"{e['call_by_call_vs_plain'][label]['p50_diff_ms']:+.3f} ms p50"
        print(row(labels[label], s, ref, f"{extra:16} freezes/inv {s['freezes_per_invocation']:.3f}"))
    print(f"  in turns of {e['block']} calls per function, {e['rounds']} rounds (back to back: each invocation's "
          f"after-work lands in its own function's next call)")
    ref = turns["plain"]["p50"]
    for label, s in turns.items():
        extra = ""
        if label != "plain":
            p = e["turns_paired"][label]
            extra = (f"{e['turns_vs_plain'][label]['p50_diff_ms']:+.3f} ms p50 (turn by turn: median "
                     f"{p['median_ms']:+.3f}, {p['min_ms']:+.3f} to {p['max_ms']:+.3f})")
        print(row(labels[label], s, ref, extra))
    print("  REPORT Duration, call by call (an invocation with an extension runs on until it is back in event/next)")
    ref = logs["plain"]["report_duration"]["p50"]
    for label, g in logs.items():
        print(row(labels[label], g["report_duration"], ref, f"{g['log_bytes_per_invocation']:.0f} log bytes/inv"))
    print(f"  {'CPU per invocation (ms), in the turns':44} {'host':>9} {'sandbox':>9} {'caller':>9} {'rest':>9} "
          f"{'machine':>9}   rest: dockerd, containerd-shim, kernel, other users")
    for label, s in turns.items():
        c = s["cpu_ms_per_invocation"]
        print(f"  {labels[label]:44} {c['host']:9.3f} {c['sandbox']:9.3f} {c['client']:9.3f} {c['rest']:9.3f} "
              f"{c['machine']:9.3f}")
    d = e["telemetry_delivered"]
    print("  telemetry delivered (records per invocation: platform.start, function, platform.runtimeDone and "
          "platform.report, 1 each if none is lost)")
    for pattern in ("call_by_call", "turns"):
        q, t = d[f"quiet_{pattern}"], d[f"telemetry_reports_{pattern}"]
        quiet = ("quiet-telemetry: unread" if q is None else
                 f"quiet-telemetry: {q['batches_per_invocation']:.2f} batches/inv, records/inv "
                 + ", ".join(f"{k.removeprefix('platform.')} {v:.3f}"
                             for k, v in q["records_per_invocation_by_type"].items()))
        print(f"    {pattern.replace('_', ' ') + ':':14} {quiet}; py-telemetry got the platform.report of "
              f"{t['received']} of {t['invocations']}")
    diff = e["call_by_call_vs_plain"]
    return (f"extensions: warm p50 with an extension doing nothing but event/next on one kept-alive connection "
            f"{diff['keepalive']['p50_diff_ms']:+.3f} ms beside the same function without it (target <= "
            f"+{e['target_ms']} besides the extension's own work), call by call, n={e['n']}; "
            f"with py-telemetry (registered for INVOKE, subscribed to telemetry) "
            f"{diff['telemetry']['p50_diff_ms']:+.3f} ms ({diff['telemetry']['p50_ratio']:.2f}x) beside the same "
            f"function without it, call by call, n={e['n']}; the Extensions API round trip alone (noop) "
            f"{diff['noop']['p50_diff_ms']:+.3f} ms, with telemetry unprinted {diff['quiet']['p50_diff_ms']:+.3f} ms; "
            f"back to back in turns: py-telemetry {e['turns_vs_plain']['telemetry']['p50_diff_ms']:+.3f} ms, noop "
            f"{e['turns_vs_plain']['noop']['p50_diff_ms']:+.3f} ms, kept-alive noop "
            f"{e['turns_vs_plain']['keepalive']['p50_diff_ms']:+.3f} ms")


def chart(r: dict, path: Path) -> None:
    """Latency distributions (cumulative: the share of calls answered within
    x ms), ours against RIE and the floors: warm back to back, warm after an
    idle gap, and cold start."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    if "warm" in r:
        w = r["warm"]
        lines = {"RIE, turns with ours": w["rie_back_to_back"]}
        if "rie" in r:
            lines["RIE, alone"] = r["rie"]["warm"]
        lines |= {"floor: aiohttp on loopback": w["floor_loopback_aiohttp"], "ours (freeze on)": w["freeze_on_back_to_back"]}
        panels.append(("warm invoke, back to back", lines, False))
        gap = {"RIE": w["rie_idle_gap"], "ours, freeze on (every call thaws)": w["freeze_on_idle_gap"],
               "ours, freeze off": w["freeze_off_idle_gap"]}
        panels.append((f"warm invoke, {w['idle_gap_ms']:.0f} ms idle before each call", gap, False))
    if "cold" in r:
        c = r["cold"]
        lines = {"floor: docker run --rm (host net)": c["floor_docker_run_host_network"],
                 "ours, stem cells": c["ours_stem_cells"], "ours, no stem cells": c["ours_no_stem_cells"]}
        if "rie" in r:
            lines = {"RIE: docker run to first answer": r["rie"]["cold"], **lines}
        panels.append(("cold start", lines, True))
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2))
    axes = axes if len(panels) > 1 else [axes]
    for ax, (title, lines, log_x) in zip(axes, panels):
        for name, stats in lines.items():
            ax.plot(stats["quantiles"], range(101), label=f"{name} (p50 {stats['p50']:.2f})",
                    drawstyle="steps-post", linewidth=1.4)
        if log_x:
            ax.set_xscale("log")
        else:                                       # up to the slowest p99: the last 1% would squash the rest
            ax.set_xlim(0, max(s["p99"] for s in lines.values()) * 1.1)
        ax.set_xlabel("latency, ms" + (" (log)" if log_x else ""))
        ax.set_ylabel("% of calls answered within")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7, loc="lower right")
    m = r["machine"]
    fig.suptitle(f"runtime-host vs RIE vs floors: {m['cores']} cores, kernel {m['kernel']}, Docker {m['docker']}, "
                 f"cgroup {m['cgroup']}, {m['date']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a few seconds each: checks every figure is produced")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated: " + ", ".join(BENCHMARKS))
    parser.add_argument("--out", default=None, help="JSON file (default: bench/results/<date>.json)")
    args = parser.parse_args()
    results = {"machine": machine(), "smoke": args.smoke}
    for name in args.only.split(","):
        if name not in BENCHMARKS:
            parser.error(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
        started = time.monotonic()
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        results[name] = run_one(name, args.smoke)
        results[name]["wall_s"] = round(time.monotonic() - started, 1)
    results["targets"] = report(results)
    m = results["machine"]
    print(f"\nmachine: {m['cores']} cores, kernel {m['kernel']}, Docker {m['docker']}, cgroup {m['cgroup']}, {m['date']}")
    stamp = ("smoke-" if args.smoke else "") + time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out = Path(args.out) if args.out else REPO / "bench" / "results" / f"{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    png = out.with_suffix(".png")
    try:
        chart(results, png)
        print(f"chart:   {png}")
    except ImportError:
        print("chart:   skipped (pip install matplotlib, or 'make bench', which does)")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
