"""Notice that the rule files changed: a fingerprint of the folder's rule files, compared on a timer.

Content hashes rather than mtimes alone: an editor or `git checkout` can rewrite a file within the
same mtime tick, and a file copied in with `cp -p` keeps an old mtime. The files are a few kB each.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from daemon.rules.loader import rule_files


def fingerprint(folder: Path) -> tuple[tuple[str, str], ...]:
    """(name, sha256) of every rule file in `folder`; a file that vanishes mid-read counts as changed."""
    result: list[tuple[str, str]] = []
    for path in rule_files(folder) if folder.is_dir() else []:
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            digest = "unreadable"
        result.append((path.name, digest))
    return tuple(result)


class RulesWatcher:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._seen = fingerprint(folder)

    def changed(self) -> bool:
        """True once per change since the last call (or since `accept`)."""
        now = fingerprint(self.folder)
        if now == self._seen:
            return False
        self._seen = now
        return True

    def accept(self) -> None:
        """Take the folder as it is now as seen (after a reload triggered some other way)."""
        self._seen = fingerprint(self.folder)
