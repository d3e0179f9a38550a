"""A strict reader of Prometheus text exposition format 0.0.4, for tests: every line must parse."""
from __future__ import annotations

import re

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
VALUE = r"[+-]?(?:Inf|NaN|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
SAMPLE = re.compile(rf"^({NAME})(?:\{{({LABEL}(?:,{LABEL})*)?,?\}})? ({VALUE})(?: -?\d+)?$")
HELP = re.compile(rf"^# HELP ({NAME}) (.*)$")
TYPE = re.compile(rf"^# TYPE ({NAME}) (counter|gauge|histogram|summary|untyped)$")
LABEL_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """{(name, labels): value}; AssertionError naming the first line that breaks the grammar."""
    assert text.endswith("\n"), "the exposition ends with a newline"
    types: dict[str, str] = {}
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line or (line.startswith("#") and not line.startswith(("# HELP", "# TYPE"))):
            continue
        if match := TYPE.match(line):
            assert match.group(1) not in types, f"line {number}: second TYPE for {match.group(1)}"
            types[match.group(1)] = match.group(2)
            continue
        if HELP.match(line):
            continue
        match = SAMPLE.match(line)
        assert match, f"line {number} is not a valid sample: {line!r}"
        name = match.group(1)
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        assert family in types, f"line {number}: sample {name} before its TYPE line"
        labels = frozenset(LABEL_PAIR.findall(match.group(2) or ""))
        key = (name, labels)
        assert key not in samples, f"line {number}: duplicate sample {line!r}"
        samples[key] = float(match.group(3).replace("Inf", "inf"))
    return samples
