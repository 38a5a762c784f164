"""JUnit XML for a rule-test report, one ``<testsuite>`` per test file, so CI systems show each case."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from .runner import CaseResult, TestReport


def _counts(cases: list[CaseResult]) -> dict[str, str]:
    return {"tests": str(len(cases)), "failures": str(sum(c.status == "failed" for c in cases)),
            "errors": str(sum(c.status == "error" for c in cases)), "skipped": "0",
            "time": f"{sum(c.elapsed_s for c in cases):.6f}"}


def to_junit(report: TestReport) -> str:
    root = ET.Element("testsuites", {"name": f"policy-engine test {report.pack} {report.version}",
                                     **_counts(list(report.cases))})
    for file in report.files:
        cases = [c for c in report.cases if c.file == file]
        suite = ET.SubElement(root, "testsuite", {"name": file, **_counts(cases)})
        props = ET.SubElement(suite, "properties")
        for name, value in (("pack", report.pack), ("version", report.version), ("digest", report.digest),
                            ("matcher", report.matcher), ("rule_coverage", str(report.coverage.rule_percent)),
                            ("condition_coverage", str(report.coverage.condition_percent))):
            ET.SubElement(props, "property", {"name": name, "value": value})
        for case in cases:
            node = ET.SubElement(suite, "testcase", {"classname": file, "name": case.name, "file": file,
                                                     "line": str(case.line), "time": f"{case.elapsed_s:.6f}"})
            if case.status == "passed":
                continue
            tag = "failure" if case.status == "failed" else "error"
            detail = [*case.failures, f"decision: {case.decision}", *(f"trail: {t}" for t in case.trail)]
            problem = ET.SubElement(node, tag, {"message": case.failures[0] if case.failures else case.status,
                                                "type": f"rule-test-{tag}"})
            problem.text = "\n".join(detail)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
