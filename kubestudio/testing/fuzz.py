"""schemathesis against a live service's OpenAPI document (the tests of every service)."""

import os
import shutil
import subprocess
import sys
from xml.etree import ElementTree


def schemathesis(document_url, service_url, token, folder, max_examples=40):
    """Run ``st`` on ``document_url`` against ``service_url`` (straight at the service's own port:
    what is judged is the service, not the proxy in front) with the check that no answer is a
    5xx. Returns (the operations tested, the run's stdout); fails with its output otherwise."""
    st = shutil.which("st", path=os.path.dirname(sys.executable)) or "st"
    command = [
        st,
        "run",
        document_url,
        "--url",
        service_url,
        "-H",
        f"Authorization: token {token}",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        str(max_examples),
        "--seed",
        "1",
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--suppress-health-check",
        "all",
        "--report",
        "junit",
        "--report-dir",
        str(folder),
    ]
    run = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=folder,
        env={**os.environ, "SCHEMATHESIS_HOOKS": "", "NO_COLOR": "1"},
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    suite = (
        ElementTree.parse(next(p for p in os.scandir(folder) if p.name.startswith("junit-")))
        .getroot()
        .find("testsuite")
    )
    assert suite.get("failures") == "0" and suite.get("errors") == "0", run.stdout[-6000:]
    return {case.get("name") for case in suite.iter("testcase")}, run.stdout
