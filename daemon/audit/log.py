"""The decision log: one JSON line per record, written by a structlog pipeline

    record ─► link into the account's hash chain, as canonical JSON ─► append to the file

so the line on disk is byte for byte what the hash covers."""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import IO, Any, Sequence

import structlog

from daemon.audit.chain import Chain, Head
from daemon.audit.record import decision_record
from daemon.rules.engine import Decision

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]


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


class _LineWriter:
    """structlog's WriteLogger without its flush per line: write_many flushes once for its records."""

    def __init__(self, file: IO[str]) -> None:
        self._write = file.write

    def msg(self, message: str) -> None:
        self._write(message + "\n")


class DecisionLogInUse(Exception):
    """Another process (or another DecisionLog in this one) is writing the file."""


def _lock(file: IO[str], path: Path) -> None:
    """Take the file for this writer alone. Two writers each continue the chain from the heads they read, so
    their records would share sequence numbers and `audit verify` would find the log broken. The lock goes
    with the process: a killed writer's lock is released by the kernel, and a restart takes it again."""
    if fcntl is None:  # not a POSIX system: nothing to lock with; docs/operations.md says one writer per file
        return
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise DecisionLogInUse(
            f"the decision log {path} is being written by another process (another `ordersync run` with this "
            f"decision_log.path, or `ordersync rules eval --decision-log`); two writers would break its hash "
            f"chain. Stop the other writer, or give this one its own decision_log.path") from None


class DecisionLog:
    """Append-only decision log at `path`. Thread-safe; records are flushed before `write` / `write_many`
    returns, and fsynced too when `fsync` is on (a power cut then loses nothing already returned).
    One writer per file: DecisionLogInUse if another holds it."""

    def __init__(self, path: Path | str, *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = self.path.open("a", encoding="utf-8")
        try:
            # Locked before the tail is read (and a torn last line cut off): never while another writes it.
            _lock(self._file, self.path)
            self._chain, self.recovered_bytes = _resume(self.path)
        except BaseException:
            self._file.close()
            raise
        self._fsync = fsync
        self._lock = threading.Lock()
        self._last: dict[str, Any] = {}
        # Its own wrapper class: the daemon's log level (structlog's global filtering wrapper) must never
        # drop a decision record.
        self._logger = structlog.wrap_logger(
            _LineWriter(self._file),
            processors=[self._link],
            wrapper_class=structlog.BoundLogger,
            cache_logger_on_first_use=True,
        )

    def _link(self, logger: Any, method: str, record: dict[str, Any]) -> str:
        line = self._chain.link(record)
        self._last = record
        return line

    def write(self, record: dict[str, Any]) -> dict[str, Any]:
        """Append a record (a dict with at least `account`); returns it with seq, prev_hash and hash."""
        return self.write_many([record])[-1]

    def write_many(self, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Append records in order, flushed (and fsynced) once for them all; returns them linked."""
        written = []
        with self._lock:
            for record in records:
                self._logger.msg(**record)
                written.append(self._last)
            self._file.flush()
            if self._fsync:
                os.fsync(self._file.fileno())
        return written

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
