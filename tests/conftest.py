"""Fixtures every test folder may use."""
from __future__ import annotations

from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SPECS_DIR = PROJECT_ROOT.parent / "shared" / "specs"
RULES_DIR = PROJECT_ROOT / "rules"


@pytest.fixture(scope="session")
def specs_dir() -> Path:
    """The official API descriptions beside the project (../shared/specs); tests skip where absent."""
    if not SPECS_DIR.is_dir():
        pytest.skip(f"official API descriptions not found at {SPECS_DIR}; contract test skipped")
    return SPECS_DIR


@pytest.fixture(scope="session")
def rules_dir() -> Path:
    return RULES_DIR
