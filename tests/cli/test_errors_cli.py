"""`ordersync errors` as an operator uses it: the error view listed from the store the config names,
an order resolved (its failed actions queued again, the order out of the view) or archived, and one clear
message with exit 2 when the config or the store cannot be used."""
from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.store import Store
from daemon.store.models import CANCEL_FEED
from tests.cli.conftest import ACCOUNT_NAME, SECRETS, write_config
from tests.conftest import PROJECT_ROOT
from tests.service.conftest import SECRET_VALUES

WHEN = r"\d{4}-\d\d-\d\d \d\d:\d\d UTC"


def failed_on_storefront(store: Store, decided, order: str, message: str) -> int:
    """An order with a storefront copy whose storefront cancel failed for good; the action's id."""
    store.upsert_order(ACCOUNT_NAME, order, storefront_order_id=f"#{order[-4:]}")
    decided([{"type": "cancel_order", "reason_code": "NoInventory"}], order=order, account=ACCOUNT_NAME)
    [action] = store.claim_actions("worker-1")
    assert store.fail_action(action.id, message)
    return action.id


def failed_on_amazon(store: Store, decided, order: str, message: str) -> int:
    """An order whose cancel_on_amazon came back failed in the feed's report; the action's id."""
    decided([{"type": "cancel_on_amazon", "reason_code": "BuyerCanceled"}], order=order, account=ACCOUNT_NAME)
    [queued] = store.queued_amazon_actions(ACCOUNT_NAME, CANCEL_FEED)
    batch = store.create_batch(ACCOUNT_NAME, CANCEL_FEED, [queued.id])
    store.record_batch_results(batch.batch.id, {1: (False, "18028", message)})
    return queued.id


def test_the_error_view_lists_each_failed_order_with_its_message(store: Store, decided, config: Path, ordersync) -> None:
    failed_on_storefront(store, decided, "111-0000001-0000001", "order #0001 is already fulfilled")
    failed_on_amazon(store, decided, "111-0000002-0000002", "The order is already shipped")
    failed_on_storefront(store, decided, "111-0000003-0000003", "storefront order not found")
    store.archive(ACCOUNT_NAME, "111-0000003-0000003")  # archived: not in the view
    decided([{"type": "add_note", "text": "fine"}], order="111-0000004-0000004", account=ACCOUNT_NAME)  # not failed

    ran = ordersync("errors", "--config", config)
    assert ran.code == 0 and ran.err == ""
    header, *rows, last = ran.lines
    assert header.split() == ["ACCOUNT", "ORDER", "SYNC", "STATUS", "FAILED", "AT", "MESSAGE"]
    assert len(rows) == 2 and last == "2 orders need attention"
    assert re.fullmatch(rf"main-us +111-0000002-0000002 +Failed Cancellation +{WHEN} +.*The order is already shipped.*",
                        rows[0])  # newest first
    assert re.fullmatch(rf"main-us +111-0000001-0000001 +Failed Cancellation +{WHEN} +order #0001 is already fulfilled",
                        rows[1])

    # `list` is the default sub-command; the options may come before or after it
    assert ordersync("errors", "list", "--config", config, "--account", ACCOUNT_NAME).out == ran.out
    assert ordersync("errors", "--config", config, "list").out == ran.out

    as_json = ordersync("errors", "list", "--config", config, "--json")
    assert as_json.code == 0
    first, second = json.loads(as_json.out)
    assert (second["account"], second["amazon_order_id"], second["storefront_order_id"], second["sync_status"],
            second["message"]) == ("main-us", "111-0000001-0000001", "#0001", "Failed Cancellation",
                                   "order #0001 is already fulfilled")
    assert first["amazon_order_id"] == "111-0000002-0000002" and re.match(r"\d{4}-\d\d-\d\dT", first["failed_at"])


def test_an_empty_view_says_so_and_names_an_account_the_config_does_not_have(store: Store, config: Path,
                                                                             ordersync) -> None:
    assert ordersync("errors", "--config", config).lines == ["no orders need attention"]
    ran = ordersync("errors", "--config", config, "--account", "main-uk")
    assert ran.code == 0
    assert ran.lines == ["no orders need attention (the configuration has no account 'main-uk'; its accounts: main-us)"]


def test_resolve_queues_the_failed_actions_again_and_the_order_leaves_the_view(store: Store, decided, config: Path,
                                                                              ordersync) -> None:
    on_storefront = failed_on_storefront(store, decided, "111-0000001-0000001", "order is already fulfilled")
    on_amazon = failed_on_amazon(store, decided, "111-0000002-0000002", "The order is already shipped")

    ran = ordersync("errors", "resolve", "--config", config, ACCOUNT_NAME, "111-0000001-0000001")
    assert ran.code == 0 and ran.err == ""
    assert ran.lines == ["111-0000001-0000001 (main-us): 1 failed action queued again with a fresh count of attempts; "
                         "the order left the error view"]
    action = store.get_action(on_storefront)
    assert (action.status, action.attempts) == ("pending", 0)  # the next dispatch run carries it out
    order = store.get_order(ACCOUNT_NAME, "111-0000001-0000001")
    assert order is not None and (order.sync_status, order.last_error) == ("Order Created", None)
    assert [row.split()[1] for row in ordersync("errors", "--config", config).lines[1:-1]] == ["111-0000002-0000002"]

    # an Amazon-bound action goes back to the queue of the next feed (options before the sub-command work too)
    ran = ordersync("errors", "--config", config, "resolve", ACCOUNT_NAME, "111-0000002-0000002")
    assert ran.code == 0 and "1 failed action queued again" in ran.out
    assert store.get_action(on_amazon).status == "queued_for_batch"
    assert [a.id for a in store.queued_amazon_actions(ACCOUNT_NAME, CANCEL_FEED)] == [on_amazon]
    assert ordersync("errors", "--config", config).lines == ["no orders need attention"]

    # resolving again is harmless and says the order was not in the view
    again = ordersync("errors", "resolve", "--config", config, ACCOUNT_NAME, "111-0000002-0000002")
    assert again.code == 0
    assert again.lines == ["111-0000002-0000002 (main-us): 0 failed actions queued again with a fresh count of attempts; "
                           "the order was not in the error view (sync status none)"]


def test_resolve_or_archive_of_an_unknown_order_names_it_and_exits_1(store: Store, decided, config: Path,
                                                                      ordersync) -> None:
    failed_on_storefront(store, decided, "111-0000001-0000001", "order is already fulfilled")
    ran = ordersync("errors", "resolve", "--config", config, ACCOUNT_NAME, "111-9999999-9999999")
    assert (ran.code, ran.out) == (1, "")
    assert ran.err.strip() == "ordersync errors resolve: no order 111-9999999-9999999 in account main-us; nothing changed"
    ran = ordersync("errors", "archive", "--config", config, "main-uk", "111-0000001-0000001")
    assert ran.code == 1
    assert ran.err.strip() == ("ordersync errors archive: no order 111-0000001-0000001 in account main-uk (the "
                               "configuration has no account 'main-uk'; its accounts: main-us); nothing changed")
    assert len(store.failed_orders()) == 1


def test_archive_hides_the_order_and_undo_brings_it_back(store: Store, decided, config: Path, ordersync) -> None:
    action = failed_on_storefront(store, decided, "111-0000001-0000001", "order is already fulfilled")
    ran = ordersync("errors", "archive", "--config", config, ACCOUNT_NAME, "111-0000001-0000001")
    assert ran.code == 0
    assert ran.lines == ["111-0000001-0000001 (main-us): archived; it no longer shows in the error view "
                         "(`ordersync errors archive --undo main-us 111-0000001-0000001` brings it back)"]
    assert ordersync("errors", "--config", config).lines == ["no orders need attention"]
    assert store.get_action(action).status == "failed"  # nothing retried

    ran = ordersync("errors", "archive", "--undo", "--config", config, ACCOUNT_NAME, "111-0000001-0000001")
    assert ran.code == 0 and "back from the archive" in ran.out
    assert ordersync("errors", "--config", config).lines[-1] == "1 order needs attention"


def test_a_config_or_store_that_cannot_be_used_is_one_message_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                          ordersync) -> None:
    def refused(config: Path | None, *expected: str) -> None:
        ran = ordersync("errors", *(("--config", config) if config else ()))
        assert (ran.code, ran.out) == (2, ""), ran
        assert ran.err.startswith("ordersync errors: ") and "Traceback" not in ran.err
        for text in expected:
            assert text in ran.err

    refused(None, "no configuration given: pass --config FILE or set $ORDERSYNC_CONFIG")
    refused(tmp_path / "nowhere.yaml", "no such config file")

    folder = tmp_path / "missing-secret"
    folder.mkdir()
    config = write_config(folder, monkeypatch, "store: {url: sqlite:///ordersync.db}\n")
    monkeypatch.delenv("T_LWA_SECRET")
    refused(config, "environment variable T_LWA_SECRET is not set")
    monkeypatch.setenv("T_LWA_SECRET", SECRET_VALUES["T_LWA_SECRET"])

    # a SQLite file that is not there is reported, not created
    refused(config, f"no database at {folder / 'ordersync.db'}", "ordersync run --config")
    assert not (folder / "ordersync.db").exists()

    # a database the daemon never migrated
    sqlite3.connect(folder / "ordersync.db").close()
    refused(config, "ordersync db upgrade")

    # an unreachable PostgreSQL server; its password (from the environment) is never shown
    folder = tmp_path / "postgres"
    folder.mkdir()
    monkeypatch.setenv("T_DB_PASSWORD", "pg-password-value-3e9b")
    config = write_config(folder, monkeypatch, "store:\n  url: postgresql+psycopg://ordersync@127.0.0.1:1/ordersync\n"
                                               "  password: {env: T_DB_PASSWORD}\n")
    refused(config, "store.url: cannot open the database postgresql+psycopg://ordersync:***@127.0.0.1:1/ordersync")
    assert "pg-password-value-3e9b" not in ordersync("errors", "--config", config).err


def test_the_installed_command_reads_the_config_from_the_environment(store: Store, decided, config: Path) -> None:
    failed_on_storefront(store, decided, "111-0000001-0000001", "order is already fulfilled")
    ran = subprocess.run([sys.executable, "-m", "daemon.cli.main", "errors"], cwd=PROJECT_ROOT, capture_output=True,
                         text=True, timeout=60, env={**os.environ, "ORDERSYNC_CONFIG": str(config)})
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines()[-1] == "1 order needs attention"
    assert "111-0000001-0000001" in ran.stdout and not any(secret in ran.stdout for secret in SECRETS)
