"""deploy/ordersync.service as systemd reads it. No systemd runs as PID 1 on the machines the suite runs
on, so the unit is never started here; `systemd-analyze verify` parses it as systemd would and names every
directive it does not know or cannot use, which is what a typo in a unit costs in production."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "ordersync.service"
INSTALLED = "/opt/ordersync/venv/bin/ordersync"
ANALYZE = shutil.which("systemd-analyze")

ORDERSYNC = Path(sys.executable).with_name("ordersync")

pytestmark = [pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed here"),
              pytest.mark.skipif(not ORDERSYNC.exists(), reason=f"no ordersync command beside {sys.executable}")]


def _verify(tmp_path: Path, text: str) -> str:
    # The unit names the installed path (docs/operations.md §systemd); verify checks it is executable.
    unit = tmp_path / "ordersync.service"
    unit.write_text(text.replace(INSTALLED, str(ORDERSYNC)))
    done = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    return (done.stdout + done.stderr).strip()


def test_the_shipped_unit_verifies_without_a_word_from_systemd(tmp_path: Path) -> None:
    text = UNIT.read_text()
    assert INSTALLED in text and "Type=notify" in text and "WatchdogSec=" in text
    assert _verify(tmp_path, text) == ""


def test_a_misspelt_directive_is_what_verify_reports(tmp_path: Path) -> None:
    """The check above can fail: systemd names an unknown key with its line."""
    report = _verify(tmp_path, UNIT.read_text().replace("WatchdogSec=", "WatchdogSecs="))
    assert "Unknown key" in report and "WatchdogSecs" in report
