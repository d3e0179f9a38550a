"""Helpers for the service tests: config files written into tmp, and an account block to reuse."""
from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]

ACCOUNT = """\
accounts:
  - name: main-us
    amazon:
      endpoint: http://127.0.0.1:9
      client_id: amzn1.application-oa2-client.test
      client_secret: {env: T_LWA_SECRET}
      refresh_token: {file: secrets/refresh_token}
      marketplace_ids: [ATVPDKIKX0DER]
      merchant_id: A1TEST
    shopify:
      base_url: http://127.0.0.1:9
      access_token: {env: T_SHOPIFY_TOKEN}
"""

SECRET_VALUES = {"T_LWA_SECRET": "lwa-secret-value-7f3a", "T_SHOPIFY_TOKEN": "shpat_token_value_91c2"}
REFRESH_TOKEN = "Atzr|refresh-token-value-55d1"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder with a copy of the shipped rules and a refresh-token file."""
    shutil.copytree(PROJECT_ROOT / "rules", tmp_path / "rules", ignore=shutil.ignore_patterns("tests", "examples"))
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "refresh_token").write_text(REFRESH_TOKEN + "\n")
    return tmp_path


def write(folder: Path, text: str, name: str = "ordersync.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path
