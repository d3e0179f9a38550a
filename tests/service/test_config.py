"""Configuration: every kind of error named by YAML path, file and line; secrets from env and file and
never shown; `ordersync config check`."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from daemon.cli.main import main
from daemon.config import SETTING_NAMES, ConfigError, Secret, load_config
from tests.service.conftest import ACCOUNT, REFRESH_TOKEN, SECRET_VALUES, write

ALL_SECRETS = [*SECRET_VALUES.values(), REFRESH_TOKEN]


def errors(path: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=SECRET_VALUES if environ is None else environ)
    text = str(info.value)
    for value in ALL_SECRETS:
        assert value not in text
    return text


def line_of(path: Path, needle: str, *, last: bool = False) -> int:
    lines = [i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line]
    return lines[-1] if last else lines[0]


def test_valid_config_reads_secrets_from_env_and_file_and_never_shows_them(workdir: Path) -> None:
    path = write(workdir, ACCOUNT + "store: {url: sqlite:///data/os.db}\n")
    config = load_config(path, environ=SECRET_VALUES)
    account = config.account("main-us")
    assert account.amazon.client_secret.reveal() == SECRET_VALUES["T_LWA_SECRET"]
    assert account.amazon.refresh_token.reveal() == REFRESH_TOKEN  # file read, trailing newline dropped
    assert account.shopify.access_token.reveal() == SECRET_VALUES["T_SHOPIFY_TOKEN"]
    shown = repr(config) + str(config)
    for value in ALL_SECRETS:
        assert value not in shown
    assert "env:T_LWA_SECRET" in shown and f"file:{workdir / 'secrets' / 'refresh_token'}" in shown
    # defaults: settings from the fact schema, batch size, relative paths from the config's folder
    assert account.settings["sync_cancellations"] is True and account.settings["allow_over_refund"] is False
    assert set(account.settings) == set(SETTING_NAMES) and account.batch_size == 15
    assert config.store.url == f"sqlite:///{workdir / 'data' / 'os.db'}"
    assert config.rules.dir == workdir / "rules"
    assert (config.http.host, config.http.port) == ("127.0.0.1", 9464)
    assert config.jobs.poll_orders == 60 and config.jobs.send_batches == 1800
    assert (config.dispatch.claim, config.dispatch.lease_seconds) == (50, 60)


def test_the_dispatch_lease_and_claim_are_configurable_and_checked(workdir: Path) -> None:
    config = load_config(write(workdir, ACCOUNT + "dispatch: {claim: 10, lease_seconds: 300}\n"), environ=SECRET_VALUES)
    assert (config.dispatch.claim, config.dispatch.lease_seconds) == (10, 300)
    path = write(workdir, ACCOUNT + "dispatch: {claim: 2.5, lease_seconds: 0, lease: 5}\n")
    text = errors(path)
    line = line_of(path, "dispatch:")
    assert re.search(rf"{path}:{line}:\d+: dispatch\.claim: should be a whole number", text), text
    assert re.search(rf"{path}:{line}:\d+: dispatch\.lease_seconds: is 0; it must be more than 0", text), text
    assert re.search(rf"{path}:{line}:\d+: dispatch\.lease: unknown key; keys here are: lease_seconds, claim", text), text


def test_literal_secret_is_refused_without_echoing_it(workdir: Path) -> None:
    path = write(workdir, ACCOUNT.replace("{env: T_SHOPIFY_TOKEN}", '"shpat_literal_in_file_0000"'))
    text = errors(path)
    assert "shpat_literal_in_file_0000" not in text
    line = line_of(path, "access_token")
    assert f"{path}:{line}:" in text
    assert "accounts[0].shopify.access_token: a secret is never written in the config file" in text
    assert "{env: VARIABLE}" in text and "{file: /path/to/file}" in text


def test_missing_env_variable_and_missing_file_are_named(workdir: Path) -> None:
    (workdir / "secrets" / "refresh_token").unlink()
    path = write(workdir, ACCOUNT)
    text = errors(path, environ={"T_SHOPIFY_TOKEN": "x"})
    assert re.search(rf"{path}:{line_of(path, 'client_secret')}:\d+: accounts\[0\]\.amazon\.client_secret: "
                     r"environment variable T_LWA_SECRET is not set", text)
    assert re.search(rf"{path}:{line_of(path, 'refresh_token')}:\d+: accounts\[0\]\.amazon\.refresh_token: "
                     rf"secret file {workdir / 'secrets' / 'refresh_token'} does not exist", text)


def test_every_problem_is_reported_at_once_with_its_place(workdir: Path) -> None:
    text = ACCOUNT.replace("merchant_id: A1TEST", "merchant_id: A1TEST\n      orders_api: v1") + """\
    settings:
      allow_overrefund: true
      sync_cancellations: "yes please"
    batch_size: fifteen
  - name: main-us
    amazon: {}
    shopify: {shop: other.myshopify.com, access_token: {env: T_SHOPIFY_TOKEN}}
jobs:
  poll_order: 30
  dispatch: -5
htp: {listen: "127.0.0.1:9464"}
logging: {format: xml}
"""
    path = write(workdir, text)
    message = errors(path)
    expected = [
        ("orders_api: v1", r"accounts\[0\]\.amazon\.orders_api: 'v1' is not one of 2026-01-01, v0"),
        ("allow_overrefund", r"accounts\[0\]\.settings\.allow_overrefund: unknown key; did you mean 'allow_over_refund'\?"),
        ("yes please", r"accounts\[0\]\.settings\.sync_cancellations: should be true or false, not text"),
        ("batch_size", r"accounts\[0\]\.batch_size: should be a whole number, not text"),
        ("- name: main-us", r"accounts\[1\]\.name: account name 'main-us' is used twice \(first at line 2\)"),
        ("amazon: {}", r"accounts\[1\]\.amazon\.endpoint: is required and missing"),
        ("poll_order:", r"jobs\.poll_order: unknown key; did you mean 'poll_orders'\?"),
        ("dispatch: -5", r"jobs\.dispatch: is -5; it must be more than 0"),
        ("htp:", r"htp: unknown key; did you mean 'http'\?"),
        ("format: xml", r"logging\.format: 'xml' is not one of json, console, auto"),
    ]
    for needle, pattern in expected:
        line = line_of(path, needle, last=needle.startswith("- name"))
        assert re.search(rf"{re.escape(str(path))}:{line}:\d+: {pattern}", message), (pattern, message)
    assert message.startswith(f"{path}: ")


def test_yaml_traps_and_syntax_errors_carry_the_line(workdir: Path) -> None:
    path = write(workdir, "decision_log:\n  fsync: yes\n")
    assert f"{path}:2:10: unquoted 'yes'" in errors(path)
    path = write(workdir, "jobs:\n  dispatch: 10\n  dispatch: 20\n")
    assert f"{path}:3:3: key 'dispatch' appears twice" in errors(path)
    path = write(workdir, "jobs: [1, 2\nhttp: {}\n")
    assert re.search(rf"{re.escape(str(path))}:\d+:\d+: not valid YAML", errors(path))


def test_store_urls(workdir: Path) -> None:
    path = write(workdir, "store: {url: 'postgresql+psycopg://sync:hunter2pass@db/sync'}\n")
    text = errors(path)
    assert "hunter2pass" not in text and "store.url: the password does not go in the URL" in text
    path = write(workdir, "store: {url: 'postgresql://sync@db/sync'}\n")
    assert "use the psycopg 3 driver" in errors(path)
    path = write(workdir, "store: {url: 'postgresql+psycopg://sync@db/sync', password: {env: T_DB}}\n")
    config = load_config(path, environ={"T_DB": "p@ss/word"})
    assert config.store.connect_url() == "postgresql+psycopg://sync:p%40ss%2Fword@db/sync"
    assert "p@ss" not in repr(config)


def test_secret_repr_and_pickle() -> None:
    import pickle

    secret = Secret("value-xyz", "env:X")
    assert "value-xyz" not in repr(secret) + str(secret) + f"{secret}"
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_example_config_is_valid_apart_from_its_secrets(tmp_path: Path) -> None:
    from tests.service.conftest import PROJECT_ROOT

    example = PROJECT_ROOT / "deploy" / "ordersync.example.yaml"
    text = example.read_text().replace("/etc/ordersync/secrets/main-us.refresh_token", str(tmp_path / "rt"))
    (tmp_path / "rt").write_text("r\n")
    path = write(tmp_path, text)
    config = load_config(path, environ={"ORDERSYNC_MAIN_US_LWA_SECRET": "a", "ORDERSYNC_MAIN_US_SHOPIFY_TOKEN": "b"})
    assert config.accounts[0].name == "main-us"
    # every setting of the fact schema is documented in the example
    from daemon.config import SETTING_NAMES

    for name in SETTING_NAMES:
        assert f"{name}:" in text


def test_config_check_prints_summary_with_secret_references(workdir: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    for name, value in SECRET_VALUES.items():
        monkeypatch.setenv(name, value)
    path = write(workdir, ACCOUNT)
    assert main(["config", "check", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "client_secret env:T_LWA_SECRET" in out and "access_token env:T_SHOPIFY_TOKEN" in out
    assert "config OK" in out
    for value in ALL_SECRETS:
        assert value not in out

    monkeypatch.delenv("T_SHOPIFY_TOKEN")
    assert main(["config", "check", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "environment variable T_SHOPIFY_TOKEN is not set" in err and "accounts[0].shopify.access_token" in err
