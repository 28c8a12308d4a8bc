"""The rule for tests that need the offline data sets (conftest.require_shared_data): where they are missing,
such tests fail in CI (CI set), so that whole modules cannot pass there by skipping, and skip with the reason on
a workstation. Checked by running pytest on those tests with FTB_SHARED_DATA pointing at an empty folder."""

import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

import pytest

from conftest import ROOT

# The two modules marked as a whole, and tests marked one by one.
TARGETS = ["tests/test_robustness.py", "tests/test_reproducibility.py",
           "tests/test_data.py::test_sst2_from_folder_reports_on_dev",
           "tests/test_training.py::test_loss_falls_and_gap_opens_on_an_easy_slice"]
REASON = "the offline data sets are not present"


def outcomes(tmp_path, ci: bool) -> dict:
    """{test id: (outcome, message)} of a pytest run of TARGETS without the data, with or without CI."""
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    env["FTB_SHARED_DATA"] = str(tmp_path / "empty")
    if ci:
        env["CI"] = "true"
    report = tmp_path / f"ci_{ci}.xml"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
                           *TARGETS], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    found = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        name = f"{case.get('classname')}.{case.get('name')}"
        children = [child for child in case if child.tag in ("error", "failure", "skipped")]
        found[name] = (children[0].tag, children[0].get("message", "")) if children else ("passed", "")
    return {"exit": done.returncode, "cases": found, "output": done.stdout[-3000:]}


@pytest.fixture(scope="module")
def collected() -> list[str]:
    """The ids of every test in TARGETS."""
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *TARGETS],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:]
    return [line for line in done.stdout.splitlines() if "::" in line]


@pytest.mark.slow
@pytest.mark.parametrize("ci", [True, False], ids=["CI=true", "no CI"])
def test_tests_that_need_the_data_fail_in_ci_and_skip_elsewhere(tmp_path, collected, ci):
    run = outcomes(tmp_path, ci)
    cases = run["cases"]
    assert len(cases) == len(collected) > 20, run  # every test of the two modules, and the two marked ones
    assert any(name.startswith("tests.test_robustness.") for name in cases), run
    assert any(name.startswith("tests.test_reproducibility.") for name in cases), run
    expected = "error" if ci else "skipped"  # a failing fixture: an error at set-up, not a skip
    wrong = {name: outcome for name, outcome in cases.items() if outcome[0] != expected or REASON not in outcome[1]}
    assert not wrong, (wrong, run["output"])
    assert all(("CI is set" in message) == ci for _, message in cases.values()), run
    assert (run["exit"] != 0) == ci, run
