"""A conformance report as a table (for people), JSON (for scripts) and
JUnit XML (for CI systems).

Owns: the three formats. JUnit has no "warn": a warning is a passed test
case with the warning in its system-out (and a property), a skipped
scenario is <skipped/>, a failed one is <failure/> whose message is what
was seen and whose text adds what was expected and the hint.
Must not: judge or run anything.
"""
from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET

from runtime_host.conformance.runner import Report

COLUMNS = (("SCENARIO", 20), ("VERDICT", 7), ("EXPECTED", 36), ("SEEN", 46), ("HINT", 34))


def table(report: Report) -> str:
    lines = [f"conformance of {report.target}", ""]
    lines.append("  ".join(f"{title:<{width}}" for title, width in COLUMNS).rstrip())
    lines.append("  ".join("-" * width for _, width in COLUMNS))
    for r in report.results:
        cells = [r.name, r.verdict.upper() if r.verdict in ("fail", "warn") else r.verdict, r.expected, r.seen, r.hint]
        wrapped = [textwrap.wrap(text, width, break_on_hyphens=False, break_long_words=False) or [""]
                   for text, (_, width) in zip(cells, COLUMNS)]
        for i in range(max(len(w) for w in wrapped)):
            row = [(w[i] if i < len(w) else "") for w in wrapped]
            lines.append("  ".join(f"{cell:<{width}}" for cell, (_, width) in zip(row, COLUMNS)).rstrip())
        lines.append("")
    c = report.counts()
    lines.append(f"{len(report.results)} scenario(s) in {report.duration_s:.1f} s: {c['pass']} pass, {c['fail']} fail, "
                 f"{c['warn']} warn, {c['skip']} skip")
    return "\n".join(lines) + "\n"


def as_dict(report: Report) -> dict:
    return {
        "target": report.target,
        "function": report.function,
        "runtime": report.runtime,
        "duration_s": report.duration_s,
        "passed": not report.failed,
        "counts": report.counts(),
        "scenarios": [{"name": r.name, "verdict": r.verdict, "expected": r.expected, "seen": r.seen,
                       "hint": r.hint, "duration_s": r.duration_s} for r in report.results],
    }


def as_json(report: Report) -> str:
    return json.dumps(as_dict(report), indent=2, ensure_ascii=False) + "\n"


def junit_xml(report: Report) -> str:
    c = report.counts()
    suites = ET.Element("testsuites", name="runtime-host conformance", tests=str(len(report.results)),
                        failures=str(c["fail"]), skipped=str(c["skip"]), time=f"{report.duration_s:.3f}")
    suite = ET.SubElement(suites, "testsuite", name=f"conformance {report.function}",
                          tests=str(len(report.results)), failures=str(c["fail"]), errors="0",
                          skipped=str(c["skip"]), time=f"{report.duration_s:.3f}")
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="target", value=report.target)
    ET.SubElement(props, "property", name="runtime", value=report.runtime)
    for r in report.results:
        case = ET.SubElement(suite, "testcase", classname=f"conformance.{report.function}", name=r.name,
                             time=f"{r.duration_s:.3f}")
        if r.verdict == "fail":
            failure = ET.SubElement(case, "failure", message=r.seen, type="ConformanceFailure")
            failure.text = f"expected: {r.expected}\nseen: {r.seen}\nhint: {r.hint}\n"
        elif r.verdict == "skip":
            ET.SubElement(case, "skipped", message=r.seen)
        else:
            case_props = ET.SubElement(case, "properties")
            ET.SubElement(case_props, "property", name="verdict", value=r.verdict)
            out = ET.SubElement(case, "system-out")
            out.text = (f"warning: {r.seen}\nhint: {r.hint}\n" if r.verdict == "warn" else f"{r.seen}\n")
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
