"""The benchmarks still run end to end on a small load, so the figures in the README can be measured
again. Nothing here is timed: the figures are read by people, never asserted."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(script: str, *args: str) -> str:
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_pipeline_benchmark_runs_and_prints_its_figures() -> None:
    out = run("pipeline_throughput.py", "--events", "2000", "--skip-pg")
    assert re.search(r"[\d,]+ events/s", out), out
    assert "MB" in out, out  # peak memory


def test_the_rules_benchmark_runs_and_prints_its_figures() -> None:
    out = run("rules_throughput.py", "--facts", "2000", "--long", "0")
    assert re.search(r"[\d,]+ facts/s", out), out


def test_the_storefront_lookup_benchmark_runs_into_the_bucket_and_prints_its_figures() -> None:
    # A bucket just above one lookup's requested cost (532 points): the second lookup already waits, and
    # four seconds at 3 a second leave a dozen paced ones however slow the machine.
    out = run("storefront_lookups.py", "--seconds", "4", "--bucket", "560")
    assert re.search(r"once it ran low: [\d.]+/s", out), out
    assert "THROTTLED answers: 0" in out, out
