"""The hash chain that makes a removed or edited decision record detectable.

Every record of an account carries its sequence number within the account, the hash of the account's
previous record, and its own hash: sha256 of the record's canonical JSON (sorted keys, no spaces,
UTF-8 as is) without the `hash` field. Removing a record breaks the next one's `seq` and `prev_hash`; editing one
breaks its `hash`. Truncating the tail leaves no gap, so `audit verify` prints each account's head
(last seq and hash) for an auditor to compare with a copy kept elsewhere (e.g. the store).
"""
from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import orjson

GENESIS = "0" * 64
# Until 2026-12 records were encoded by the standard library alone. orjson writes the same bytes for what a
# decision record holds (strings, whole numbers, booleans, null, lists, objects) and for most floats; it
# writes some float exponents differently (1.5e-7 where json wrote 1.5e-07), NaN as null, an Enum as its
# value. It costs a fifteenth (6 µs where json took 78 for a 3.6 KB record, a seventh of deciding an
# event). `verify` accepts a record hashed in either form, so logs written before the change still verify.
_legacy = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str).encode
_legacy_ascii = json.JSONEncoder(ensure_ascii=True, sort_keys=True, separators=(",", ":"), default=str).encode
# str() for what JSON has no type for, as the standard library's default=str did (a datetime as
# "2025-06-01 12:00:00+00:00", a dataclass as its repr), so a line reads as it always did.
_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def canonical(record: dict[str, Any]) -> str:
    """The record's canonical JSON: orjson's, or the standard library's for what orjson refuses."""
    try:
        return orjson.dumps(record, default=str, option=_OPTIONS).decode("utf-8")
    except TypeError:
        pass
    # What orjson refuses: integers beyond 64 bits, keys that are not strings, strings with lone surrogates.
    # Keys become the strings JSON makes of them first, so their order is the order verify reads them in.
    keyed = _string_keys(record)
    text = _legacy(keyed)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (from a \ud800 escape in Amazon's JSON) has no UTF-8: escaped, it is JSON text.
        text = _legacy_ascii(keyed)
    return text


def _string_keys(value: Any) -> Any:
    if isinstance(value, dict):
        # As json.dumps names keys; two keys naming the same string keep the later value, as json.loads does.
        return {(key if isinstance(key, str) else _legacy(key)): _string_keys(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_string_keys(item) for item in value]
    return value


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def record_hash(record: dict[str, Any]) -> str:
    return _sha256(canonical({key: value for key, value in record.items() if key != "hash"}))


def hash_matches(record: dict[str, Any]) -> bool:
    """Whether `record` (as read back from its line) has the hash of its content, in today's canonical form
    or in the standard library's form that records written before 2026-12 were hashed in."""
    if record_hash(record) == record.get("hash"):
        return True
    return _sha256(_legacy({key: value for key, value in record.items() if key != "hash"})) == record.get("hash")


@dataclass
class Head:
    seq: int = 0
    hash: str = GENESIS


@dataclass
class Chain:
    """The heads of every account's chain; `link` stamps a record as the next of its account."""

    heads: dict[str, Head] = field(default_factory=dict)

    def link(self, record: dict[str, Any]) -> str:
        """Stamp `record` as the next of its account (seq, prev_hash, hash) and return its line:
        canonical(record), encoded once with a placeholder for the hash. The hashed body is that line
        without the hash member; the line is that line with the hash put in the placeholder's place."""
        head = self.heads.setdefault(record.get("account") or "", Head())
        record["seq"] = head.seq + 1
        record["prev_hash"] = head.hash
        record["hash"] = _PLACEHOLDER
        line = canonical(record)
        record["hash"] = _sha256(_without_hash(line))
        head.seq, head.hash = record["seq"], record["hash"]
        return line.replace(_PLACEHOLDER, record["hash"], 1)


# Stands for the hash while a record is encoded: 64 hex digits, as long as a hash and JSON as it is, drawn
# at random per process so that nothing in a record's content is it: its first occurrence in the line is
# the top-level member.
_PLACEHOLDER = secrets.token_hex(32)
_HASH_MEMBER = f'"hash":"{_PLACEHOLDER}"'


def _without_hash(line: str) -> str:
    """The record's line without its (placeholder) hash member and the comma that joins it to another."""
    at = line.index(_HASH_MEMBER)
    end = at + len(_HASH_MEMBER)
    if line[at - 1] == ",":
        at -= 1
    elif line[end] == ",":
        end += 1
    return line[:at] + line[end:]


@dataclass
class Break:
    line: int
    account: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class Verification:
    records: int
    heads: dict[str, Head]
    broken: Break | None

    @property
    def ok(self) -> bool:
        return self.broken is None


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            yield number, line


def verify(path: Path | str) -> Verification:
    """Check every record; stop at the first broken or missing one."""
    path = Path(path)
    heads: dict[str, Head] = {}
    count = 0
    for number, line in _lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            return Verification(count, heads, Break(number, "", f"not a JSON record ({exc.msg} at column {exc.colno}): the line was edited or cut"))
        if not isinstance(record, dict) or "hash" not in record or "seq" not in record:
            return Verification(count, heads, Break(number, "", "not a decision-log record (no seq or hash)"))
        account = record.get("account") or ""
        head = heads.setdefault(account, Head())
        label = f"account {account!r}" if account else "the default account"
        if not hash_matches(record):
            return Verification(count, heads, Break(number, account, f"record {record.get('decision_id')} of {label} "
                                                                      f"(seq {record['seq']}) was changed after it was written: its hash does not match its content"))
        if record["seq"] != head.seq + 1 or record.get("prev_hash") != head.hash:
            if record["seq"] > head.seq + 1:
                if record["seq"] - head.seq > 2:
                    missing = f"records {head.seq + 1} to {record['seq'] - 1} of {label} are"
                else:
                    missing = f"record {head.seq + 1} of {label} is"
                message = f"{missing} missing: the next record found is seq {record['seq']}"
            else:
                message = f"record seq {record['seq']} of {label} does not follow seq {head.seq} (its prev_hash does not match)"
            return Verification(count, heads, Break(number, account, message))
        head.seq, head.hash = record["seq"], record["hash"]
        count += 1
    return Verification(count, heads, None)
