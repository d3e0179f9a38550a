"""0002: actions.idempotency_key is no longer a unique index of its own.

The key is "{decision_id}:{idx}", so uq_actions_decision_idx (decision_id, idx) already makes it unique.
Its own index was a second B-tree keyed by a random UUID: every action written touched another page at a
random place, about a twelfth of what recording a decision cost on SQLite once the store held 100k
decisions (benchmarks/pipeline_throughput.py), and nothing looks actions up by their key.

SQLite cannot drop a constraint: the table is rebuilt from its own CREATE TABLE text, as SQLite's
documentation prescribes (foreign keys off for the step, checked before it commits; the runner does
both, see REBUILDS_TABLES)."""
from __future__ import annotations

import re

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

NAME = "idempotency key not unique on its own"
REBUILDS_TABLES = True

_UNIQUE_KEY = re.compile(r",\s*UNIQUE \(idempotency_key\)")


def upgrade(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        for constraint in inspect(conn).get_unique_constraints("actions"):
            if constraint["column_names"] == ["idempotency_key"]:
                conn.execute(text(f'ALTER TABLE actions DROP CONSTRAINT "{constraint["name"]}"'))
        return
    create = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'actions'").scalar_one()
    rebuilt, found = _UNIQUE_KEY.subn("", create)
    if found != 1:
        raise RuntimeError(f"migration 0002: the actions table is not as 0001 made it (UNIQUE (idempotency_key) "
                           f"found {found} times); restore a backup taken before it was changed by hand")
    indexes = [sql for (sql,) in conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'actions' AND sql IS NOT NULL")]
    conn.exec_driver_sql(rebuilt.replace("CREATE TABLE actions", "CREATE TABLE actions_rebuilt", 1))
    conn.exec_driver_sql("INSERT INTO actions_rebuilt SELECT * FROM actions")
    conn.exec_driver_sql("DROP TABLE actions")
    conn.exec_driver_sql("ALTER TABLE actions_rebuilt RENAME TO actions")
    for sql in indexes:
        conn.exec_driver_sql(sql)
