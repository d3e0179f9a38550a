"""`ordersync sim` with no target: both stand-ins on loopback, answering, stopped cleanly by SIGTERM."""
from __future__ import annotations

import re
import signal
import subprocess
import sys

import httpx

from tests.conftest import PROJECT_ROOT


def test_both_stand_ins_start_answer_and_stop_on_sigterm():
    process = subprocess.Popen([sys.executable, "-m", "daemon.cli.main", "sim", "--amazon-port", "0", "--shopify-port", "0"],
                               cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        urls = {}
        while len(urls) < 2:
            line = process.stdout.readline()
            assert line, "the stand-ins stopped before announcing themselves"
            match = re.match(r"(amazon|shopify) stand-in on (http://\S+)", line)
            if match:
                urls[match[1]] = match[2]
        for url in urls.values():
            assert httpx.get(f"{url}/_sim/journal", timeout=5).status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
