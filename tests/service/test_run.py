"""`ordersync run` as a user runs it: a real subprocess, real signals, a real port."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from tests.service.conftest import ACCOUNT, REFRESH_TOKEN, SECRET_VALUES, write
from tests.service.prom import parse

ORDERSYNC = [sys.executable, "-m", "daemon.cli.main"]
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class Daemon:
    """An `ordersync run` process whose JSON log lines are collected as they come."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self.process = subprocess.Popen([*ORDERSYNC, "run", "--config", str(config)], cwd=PROJECT_ROOT,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env={**os.environ, **(env or {})})
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.raw.append(line)
            try:
                self.lines.append(json.loads(line))
            except json.JSONDecodeError:
                pass

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 15, after: int = 0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines[after:]:
                if predicate(line):
                    return line
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no such log line within {timeout}s; stdout:\n{''.join(self.raw)}\n"
                             f"stderr:\n{self.stderr() if self.process.poll() is not None else '(running)'}")

    def event(self, name: str, after: int = 0, **fields: Any) -> dict[str, Any]:
        return self.wait_for(lambda l: l.get("event") == name and all(l.get(k) == v for k, v in fields.items()),
                             after=after)

    def stderr(self) -> str:
        assert self.process.stderr is not None
        return self.process.stderr.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def daemons() -> Any:
    started: list[Daemon] = []

    def start(config: Path, env: dict[str, str] | None = None) -> Daemon:
        daemon = Daemon(config, env)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


def metric(url: str, name: str, **labels: str) -> float:
    samples = parse(httpx.get(f"{url}/metrics").text)
    return samples.get((name, frozenset(labels.items())), 0.0)


def break_rule_file(path: Path) -> int:
    """Misspell a field in the first rule's `when`; the line it is on."""
    lines = path.read_text().splitlines(keepends=True)
    for number, line in enumerate(lines, 1):
        if line.strip().startswith("event:") and number > 3:
            lines[number - 1] = line.replace("event:", "evnt:")
            path.write_text("".join(lines))
            return number
    raise AssertionError("no 'event:' condition found in the rule file")


def test_run_serves_reloads_on_sighup_and_stops_on_sigterm(workdir: Path, daemons: Any) -> None:
    config = write(workdir, ACCOUNT + """\
http: {listen: "127.0.0.1:0"}
rules: {watch_seconds: 0}
logging: {format: json}
shutdown: {drain_seconds: 5}
""")
    daemon = daemons(config, SECRET_VALUES)
    url = daemon.event("http listening")["url"]
    daemon.event("ordersync started")
    assert httpx.get(f"{url}/healthz").status_code == 200
    ready = httpx.get(f"{url}/readyz")
    # the account points at nothing and nothing has polled it: not ready, and it says why
    assert ready.status_code == 503
    assert ready.json()["polls"] == {"main-us": "no successful poll yet"} and ready.json()["store"] == "ok"
    old_rules = ready.json()["rules"]
    # The metrics job counts each account's cancellation rate (an empty grid: 0) soon after the start.
    rate_key = ("ordersync_cancellation_rate_percent", frozenset({("account", "main-us")}))
    deadline = time.monotonic() + 15
    while rate_key not in (samples := parse(httpx.get(f"{url}/metrics").text)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert samples[rate_key] == 0.0
    # Whether Amazon paused each job that can be: every series there once the jobs' first runs, at start, end.
    assert {dict(labels)["work"]: value for (name, labels), value in samples.items() if name == "ordersync_amazon_paused"} \
        == {"buyer_request_reminders": 0.0, "storefront_cancellations": 0.0, "storefront_refunds": 0.0, "send_batches": 0.0}

    refund = workdir / "rules" / "refund.yaml"
    good = refund.read_text()
    line = break_rule_file(refund)
    mark = len(daemon.lines)
    daemon.process.send_signal(signal.SIGHUP)
    failed = daemon.event("rules reload failed; the previous rules keep running", after=mark, trigger="SIGHUP")
    assert any(p.startswith(f"{refund}:{line}:") and "evnt" in p for p in failed["problems"]), failed
    assert metric(url, "ordersync_rules_reloads_total", result="error") == 1
    assert daemon.process.poll() is None
    assert httpx.get(f"{url}/readyz").json()["rules"] == old_rules  # the old rules still run

    refund.write_text(good.replace("description:", "description: (edited)", 1))
    mark = len(daemon.lines)
    daemon.process.send_signal(signal.SIGHUP)
    loaded = daemon.event("rules loaded", after=mark, trigger="SIGHUP")
    assert loaded["rulesets"]["refund"][:12] != old_rules["refund"]
    assert metric(url, "ordersync_rules_reloads_total", result="ok") == 1
    assert httpx.get(f"{url}/readyz").json()["rules"]["refund"] == loaded["rulesets"]["refund"][:12]

    started = time.monotonic()
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(timeout=10) == 0
    assert time.monotonic() - started < 5
    daemon.event("stopped")
    output = "".join(daemon.raw) + daemon.stderr()
    for value in [*SECRET_VALUES.values(), REFRESH_TOKEN]:
        assert value not in output


def test_a_change_in_the_rules_folder_reloads_without_a_signal(workdir: Path, daemons: Any) -> None:
    config = write(workdir, 'http: {listen: "127.0.0.1:0"}\nrules: {watch_seconds: 0.2}\nlogging: {format: json}\n')
    daemon = daemons(config)
    url = daemon.event("http listening")["url"]
    daemon.event("ordersync started")
    cancellation = workdir / "rules" / "cancellation.yaml"
    good = cancellation.read_text()
    line = break_rule_file(cancellation)
    failed = daemon.event("rules reload failed; the previous rules keep running", trigger="file change")
    assert any(p.startswith(f"{cancellation}:{line}:") for p in failed["problems"])
    cancellation.write_text(good + "\n# edited\n")
    daemon.event("rules loaded", trigger="file change")
    assert metric(url, "ordersync_rules_reloads_total", result="ok") == 1
    assert metric(url, "ordersync_rules_reloads_total", result="error") == 1
    daemon.process.send_signal(signal.SIGINT)
    assert daemon.process.wait(timeout=10) == 0


def run_until_exit(config: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ORDERSYNC, "run", "--config", str(config)], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=30, env={**os.environ, **(env or {})})


def test_config_error_exits_2_with_a_clear_message(workdir: Path) -> None:
    config = write(workdir, ACCOUNT.replace("{env: T_LWA_SECRET}", "literal-secret-abc") + "jobs: {poll_order: 5}\n")
    result = run_until_exit(config, {"T_SHOPIFY_TOKEN": "x"})
    assert result.returncode == 2
    assert result.stdout == ""
    first = result.stderr.splitlines()[0]
    assert first == f"ordersync: cannot start: {config}: 2 problem(s) in the configuration:"
    assert "accounts[0].amazon.client_secret: a secret is never written in the config file" in result.stderr
    assert "jobs.poll_order: unknown key; did you mean 'poll_orders'?" in result.stderr
    assert "literal-secret-abc" not in result.stderr


def test_broken_rules_at_start_exit_2(workdir: Path) -> None:
    line = break_rule_file(workdir / "rules" / "refund.yaml")
    result = run_until_exit(write(workdir, 'http: {listen: "127.0.0.1:0"}\nlogging: {format: json}\n'))
    assert result.returncode == 2
    assert result.stderr.startswith(f"ordersync: cannot start: the rules in {workdir / 'rules'} do not load")
    assert f"{workdir / 'rules' / 'refund.yaml'}:{line}:" in result.stderr


def test_unreachable_database_exits_2_without_the_password(workdir: Path) -> None:
    config = write(workdir, """\
store: {url: "postgresql+psycopg://sync@127.0.0.1:1/sync", password: {env: T_DB_PASSWORD}}
http: {listen: "127.0.0.1:0"}
logging: {format: json}
""")
    result = run_until_exit(config, {"T_DB_PASSWORD": "db-password-3e9"})
    assert result.returncode == 2
    assert result.stderr.startswith("ordersync: cannot start: store.url: cannot open the database "
                                    "postgresql+psycopg://sync:***@127.0.0.1:1/sync")
    assert "db-password-3e9" not in result.stderr + result.stdout


def test_missing_feed_schemas_exit_2_saying_where_to_point(workdir: Path) -> None:
    # Feeds are validated before they leave; without the XSDs every feed would fail later, so start-up stops.
    empty = workdir / "no-xsd"
    empty.mkdir()
    config = write(workdir, ACCOUNT + 'http: {listen: "127.0.0.1:0"}\nlogging: {format: json}\n')
    result = run_until_exit(config, {**SECRET_VALUES, "ORDERSYNC_SPAPI_XSD_DIR": str(empty)})
    assert result.returncode == 2
    assert result.stderr.startswith("ordersync: cannot start: account main-us: Amazon feed schemas not found: "
                                    f"{empty / 'amzn-envelope.xsd'} is missing"), result.stderr
    assert "ORDERSYNC_SPAPI_XSD_DIR" in result.stderr
    assert not any(secret in result.stderr + result.stdout for secret in SECRET_VALUES.values())


def test_a_feed_schema_that_does_not_load_exits_2_naming_the_file(workdir: Path) -> None:
    import shutil

    source = PROJECT_ROOT.parent / "shared" / "specs" / "spapi" / "xsd"
    if not source.is_dir():
        pytest.skip(f"the SP-API feed schemas are not at {source}")
    partial = workdir / "xsd"
    shutil.copytree(source, partial)
    (partial / "amzn-base.xsd").unlink()  # the envelope is there, a file it includes is not
    config = write(workdir, ACCOUNT + 'http: {listen: "127.0.0.1:0"}\nlogging: {format: json}\n')
    result = run_until_exit(config, {**SECRET_VALUES, "ORDERSYNC_SPAPI_XSD_DIR": str(partial)})
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"ordersync: cannot start: account main-us: Amazon feed schemas in {partial} do not load")
    assert "amzn-base.xsd" in result.stderr and "Traceback" not in result.stderr


def test_port_in_use_exits_2(workdir: Path) -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run_until_exit(write(workdir, f'http: {{listen: "127.0.0.1:{port}"}}\nlogging: {{format: json}}\n'))
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "change http.listen" in result.stderr


def test_a_second_daemon_writing_the_same_decision_log_exits_2_and_the_first_runs_on(workdir: Path, daemons: Any) -> None:
    # Started twice by mistake (a unit and a shell, say): the second would break the first's hash chain.
    config = write(workdir, 'http: {listen: "127.0.0.1:0"}\nlogging: {format: json}\n')
    first = daemons(config)
    url = first.event("http listening")["url"]
    first.event("ordersync started")
    second = run_until_exit(config)
    assert second.returncode == 2
    log_path = workdir / "var" / "decisions.jsonl"
    assert second.stderr.startswith(f"ordersync: cannot start: the decision log {log_path} is being written by "
                                     "another process"), second.stderr
    assert "give this one its own decision_log.path" in second.stderr
    assert first.process.poll() is None and httpx.get(f"{url}/healthz").status_code == 200


def test_systemd_notify_ready_watchdog_stopping(workdir: Path, daemons: Any, tmp_path: Path) -> None:
    import socket

    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        sock.settimeout(10)
        config = write(workdir, 'http: {listen: "127.0.0.1:0"}\nrules: {watch_seconds: 0}\nlogging: {format: json}\n')
        # WATCHDOG_PID unset: systemd sets it to the main pid; without it the daemon trusts WATCHDOG_USEC.
        daemon = daemons(config, {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "1000000"})
        received = [sock.recv(256).decode() for _ in range(2)]
        assert received == ["READY=1", "WATCHDOG=1"]
        daemon.process.send_signal(signal.SIGTERM)
        while (message := sock.recv(256).decode()) == "WATCHDOG=1":
            pass
        assert message == "STOPPING=1"
        assert daemon.process.wait(timeout=10) == 0
