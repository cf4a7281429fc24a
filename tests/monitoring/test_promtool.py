"""The alert rules, unit-tested by promtool: each alert fires on its failure and not on a
healthy look-alike (tests/monitoring/promtool/raftkv-rules.test.yaml)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.monitoring.system import binary

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "charts" / "raftkv-operator" / "files" / "prometheus-rules.yaml"
RULE_TESTS = Path(__file__).resolve().parent / "promtool" / "raftkv-rules.test.yaml"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool"), *args], capture_output=True, text=True, timeout=120, cwd=REPO
    )


def test_rule_file_is_valid() -> None:
    done = _promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_rule_unit_tests_pass() -> None:
    done = _promtool("test", "rules", str(RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_every_alert_has_a_firing_case_and_a_quiet_case() -> None:
    alerts = {
        rule["alert"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert alerts - firing == set(), f"alerts never shown to fire: {sorted(alerts - firing)}"
    assert alerts - quiet == set(), f"alerts never shown to stay quiet: {sorted(alerts - quiet)}"


def test_promtool_catches_a_broken_threshold(tmp_path: Path) -> None:
    # The unit tests are not vacuous: with a no-leader threshold that can never be met,
    # they must fail.
    broken_rules = tmp_path / "rules.yaml"
    text = RULES.read_text()
    assert "max by (namespace, cluster) (raftkv_is_leader) == 0" in text
    broken_rules.write_text(text.replace("(raftkv_is_leader) == 0", "(raftkv_is_leader) == 2"))
    suite = yaml.safe_load(RULE_TESTS.read_text())
    suite["rule_files"] = [str(broken_rules)]
    broken_tests = tmp_path / "tests.yaml"
    broken_tests.write_text(yaml.safe_dump(suite))
    done = _promtool("test", "rules", str(broken_tests))
    assert done.returncode != 0
    assert "RaftkvNoLeader" in done.stdout + done.stderr
