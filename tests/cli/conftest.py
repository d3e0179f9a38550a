"""The operator commands run against a real store named by a real config file: the store suite's migrated
store (SQLite always, PostgreSQL too when ORDERSYNC_TEST_PG_URL is set) and its `decided` helper."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from daemon.cli.common import CONFIG_ENV
from daemon.cli.main import main
from tests.service.conftest import ACCOUNT, REFRESH_TOKEN, SECRET_VALUES, write
from tests.store.conftest import decided, store  # noqa: F401  (fixtures)

ACCOUNT_NAME = "main-us"  # the account of tests.service.conftest.ACCOUNT
SECRETS = [*SECRET_VALUES.values(), REFRESH_TOKEN]


@dataclass
class Ran:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


def write_config(folder: Path, monkeypatch: pytest.MonkeyPatch, store_yaml: str) -> Path:
    """ordersync.yaml in `folder`: account main-us, its secrets from the environment and a file, then `store_yaml`."""
    for name, value in SECRET_VALUES.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    (folder / "secrets").mkdir(exist_ok=True)
    (folder / "secrets" / "refresh_token").write_text(REFRESH_TOKEN + "\n")
    return write(folder, ACCOUNT + store_yaml)


@pytest.fixture
def config(tmp_path: Path, db_url: str, store, monkeypatch: pytest.MonkeyPatch) -> Path:  # noqa: F811
    """A config file whose store is the test's (already migrated) database."""
    return write_config(tmp_path, monkeypatch, f"store: {{url: '{db_url}'}}\n")


@pytest.fixture
def ordersync(capsys: pytest.CaptureFixture[str]) -> Callable[..., Ran]:
    """Run `ordersync ARGS...` in this process (daemon.cli.main.main); what it printed, and its exit code.
    No output ever holds a secret of the config."""
    def run(*args: object) -> Ran:
        capsys.readouterr()
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        for secret in SECRETS:
            assert secret not in out + err
        return Ran(code, out, err)

    return run
