"""Run the test suite in the current environment and record which versions it ran with and how it ended.

    make test-latest        # a fresh .venv-latest with the newest allowed versions, then this script

`make test` installs the exact versions of `constraints.txt`; this script is how drift from them is caught on
purpose. It runs `pytest -q` (extra arguments are passed on), writes `benchmarks/results/compatibility.json` (the
installed versions of the core dependencies, which of them differ from `constraints.txt`, and the counts), refreshes
the README's "verified with" lines, and exits with pytest's exit code.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from importlib import metadata
from pathlib import Path

from benchmarks.common import ROOT, write_result
from benchmarks.render import CORE_PACKAGES, read_constraints, update_readme


def installed_versions(names: tuple[str, ...]) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def run_suite(pytest_args: list[str]) -> tuple[int, dict[str, int]]:
    """Run pytest in a subprocess; return its exit code and the counts from its JUnit report."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}"]
        code = subprocess.run([*command, *pytest_args], cwd=ROOT).returncode
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        if report.is_file():
            root = ElementTree.parse(report).getroot()
            for suite in root.iter("testsuite"):
                for key in counts:
                    counts[key] += int(suite.get(key, 0))
    failed = counts["failures"] + counts["errors"]
    return code, {
        "passed": counts["tests"] - failed - counts["skipped"],
        "failed": counts["failures"],
        "errors": counts["errors"],
        "skipped": counts["skipped"],
    }


def main() -> int:
    pytest_args = sys.argv[1:]
    versions = installed_versions(CORE_PACKAGES)
    pinned = read_constraints()
    drift = {
        name: {"constraints": pinned.get(name), "installed": version}
        for name, version in versions.items()
        if pinned.get(name) is not None and version != pinned.get(name)
    }
    code, counts = run_suite(pytest_args)
    write_result(
        "compatibility",
        config={"pytest_args": pytest_args, "python": sys.version.split()[0]},
        results={"installed": versions, "constraints": {name: pinned.get(name) for name in CORE_PACKAGES}},
        summary={**counts, "exit_code": code, "passed_all": code == 0, "drift": drift},
    )
    update_readme()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
