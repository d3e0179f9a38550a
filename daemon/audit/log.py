"""The decision log: one JSON line per record, written by a structlog pipeline

    record ─► link into the account's hash chain ─► canonical JSON ─► append to the file

so the line on disk is byte for byte what the hash covers."""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import IO, Any

import structlog

from daemon.audit.chain import Chain, Head, canonical
from daemon.audit.record import decision_record
from daemon.rules.engine import Decision


def _resume(path: Path) -> tuple[Chain, int]:
    """The chain heads from the records already in the file; a last line cut short by a crash while it
    was written (it has no newline) never was a record and is removed. Returns the bytes removed."""
    chain = Chain()
    if not path.exists():
        return chain, 0
    removed = 0
    with path.open("rb+") as handle:
        data = handle.read()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            removed = len(data) - end
            handle.truncate(end)
        for line in data[:end].splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # `audit verify` reports it; writing goes on after the last good head
            if isinstance(record, dict) and "seq" in record and "hash" in record:
                chain.heads[record.get("account") or ""] = Head(record["seq"], record["hash"])
    return chain, removed


class DecisionLog:
    """Append-only decision log at `path`. Thread-safe; each record is flushed before `write` returns,
    and fsynced too when `fsync` is on (a power cut then loses nothing already returned)."""

    def __init__(self, path: Path | str, *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._chain, self.recovered_bytes = _resume(self.path)
        self._file: IO[str] = self.path.open("a", encoding="utf-8")
        self._fsync = fsync
        self._lock = threading.Lock()
        self._last: dict[str, Any] = {}
        # Its own wrapper class: the daemon's log level (structlog's global filtering wrapper) must never
        # drop a decision record.
        self._logger = structlog.wrap_logger(
            structlog.WriteLogger(self._file),
            processors=[self._link, self._render],
            wrapper_class=structlog.BoundLogger,
            cache_logger_on_first_use=True,
        )

    def _link(self, logger: Any, method: str, record: dict[str, Any]) -> dict[str, Any]:
        self._last = self._chain.link(record)
        return self._last

    @staticmethod
    def _render(logger: Any, method: str, record: dict[str, Any]) -> str:
        return canonical(record)

    def write(self, record: dict[str, Any]) -> dict[str, Any]:
        """Append a record (a dict with at least `account`); returns it with seq, prev_hash and hash."""
        with self._lock:
            self._logger.msg(**record)
            self._file.flush()
            if self._fsync:
                os.fsync(self._file.fileno())
            return self._last

    def write_decision(self, decision: Decision) -> dict[str, Any]:
        return self.write(decision_record(decision))

    def heads(self) -> dict[str, Head]:
        return {account: Head(head.seq, head.hash) for account, head in self._chain.heads.items()}

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def __enter__(self) -> "DecisionLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
