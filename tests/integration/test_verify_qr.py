"""The offline QR check (`check_qr_url`) and `invoiceloop verify-qr` against keys from a file and a URL."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from invoiceloop.cli import main
from invoiceloop.settings import Settings
from invoicing import keyring
from invoicing.keys import jwk
from tests.conftest import ServerProcess
from verification.qr import check_qr_url, keys_from_jwks


@pytest.fixture
def keys(settings: Settings, seller: Any) -> dict[str, bytes]:
    """The keyring's public keys (the verify server's: the test settings' data folder)."""
    return {kid: key.public_raw for kid, key in keyring.load(settings.keyring).keys.items()}


async def test_check_qr_url(seller: Any, keys: dict[str, bytes]) -> None:
    url = (await seller.issue())["verify_url"]
    good = check_qr_url(url, keys)
    assert (
        good.valid and good.reason == "signature valid" and good.signing_core and good.signing_core.startswith("IL1|")
    )
    changed_total = re.sub(r"&t=[0-9.]+", "&t=9999.00", url)
    assert check_qr_url(changed_total, keys).reason == "signature does not match"
    assert "unknown key" in check_qr_url(url, {}).reason
    assert "malformed fields: s" in check_qr_url(re.sub(r"&s=[^&]+", "", url), keys).reason
    assert not check_qr_url("not a url", keys).valid
    assert keys_from_jwks(json.dumps({"keys": [jwk(k, v) for k, v in keys.items()]})) == keys


async def test_verify_qr_command(
    seller: Any,
    keys: dict[str, bytes],
    tmp_path: Path,
    verify_server: ServerProcess,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = (await seller.issue())["verify_url"]
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk(k, v) for k, v in keys.items()]}))
    assert await asyncio.to_thread(main, ["verify-qr", url, "--keys", str(jwks)]) == 0
    assert "VALID: signature valid" in capsys.readouterr().out
    forged = re.sub(r"&k=[0-9]+", "&k=" + "1" * 20, url)
    assert await asyncio.to_thread(main, ["verify-qr", forged, "--keys", str(jwks)]) == 1
    assert "INVALID" in capsys.readouterr().out
    remote = verify_server.base_url + "/.well-known/jwks.json"
    assert await asyncio.to_thread(main, ["verify-qr", url, "--keys", remote, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["valid"] is True
