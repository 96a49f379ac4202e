"""The rendered PrometheusRule through Prometheus' own promtool: syntax (check rules) and behaviour
(test rules, alerts_test.yaml)."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.chart.chart import MONITORING_ON, only, render

HERE = Path(__file__).resolve().parent
PROMTOOL = shutil.which("promtool")


@pytest.fixture
def rules_file(tmp_path) -> Path:
    """The rule groups of the rendered PrometheusRule, as a Prometheus rule file."""
    rule = only(render(MONITORING_ON), "PrometheusRule")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    return path


def promtool(*args: str) -> None:
    assert PROMTOOL, "promtool not found: .ci/run installs Debian's prometheus package, which ships it"
    result = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_checks_the_rules(rules_file):
    promtool("check", "rules", str(rules_file))


def test_promtool_unit_tests_pass(rules_file):
    tests = rules_file.parent / "alerts_test.yaml"
    shutil.copy(HERE / "alerts_test.yaml", tests)
    promtool("test", "rules", str(tests))
