"""The house rules that keep the code base ownable, checked on the source itself: dependencies point one way,
the composition root is the only wiring, SQL lives in repository modules, and the pure modules do no I/O."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("invoicing", "verification", "delivery", "invoiceloop")
# What verification and delivery may use of invoicing: its model, formats, errors, db and repositories, and the
# platform pieces shared by every package (the HTTP helpers, the queue, the SMS outbox, signature checks,
# the PDF drawing parts). Never its issuing use cases, its API or its answers.
FORBIDDEN_FROM_INVOICING = {"invoicing.api", "invoicing.services", "invoicing.schemas"}
PURE = [
    "invoicing/model.py",
    "invoicing/formats.py",
    "invoicing/orders.py",
    "invoicing/errors.py",
    "invoicing/words.py",
    "invoicing/mail_message.py",
    "invoicing/webhooks.py",
    "delivery/model.py",
    "delivery/s10.py",
    "verification/model.py",
    "verification/qr.py",
]
IO_MODULES = ("asyncpg", "redis", "httpx", "litestar", "arq", "twilio", "urllib.request", "socket", "requests")
SQL = re.compile(r"\b(SELECT\s.+\sFROM|INSERT INTO|UPDATE \w+( \w+)? SET|DELETE FROM)\b", re.S)


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def imports(path: Path) -> set[str]:
    """Every module the file imports (absolute names; `from x import y` counts `x` and `x.y`)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def top(name: str) -> str:
    return name.split(".")[0]


@pytest.mark.parametrize("package", ["invoicing", "verification", "delivery"])
def test_no_package_imports_the_composition_root(package: str) -> None:
    for path in modules(package):
        assert "invoiceloop" not in {top(m) for m in imports(path)}, path


def test_invoicing_imports_neither_other_package() -> None:
    for path in modules("invoicing"):
        assert not {top(m) for m in imports(path)} & {"verification", "delivery"}, path


@pytest.mark.parametrize("package", ["verification", "delivery"])
def test_the_public_and_postal_sides_use_only_invoicings_shared_pieces(package: str) -> None:
    for path in modules(package):
        assert not imports(path) & FORBIDDEN_FROM_INVOICING, path


def test_verification_and_delivery_do_not_import_each_other() -> None:
    for a, b in (("verification", "delivery"), ("delivery", "verification")):
        for path in modules(a):
            assert b not in {top(m) for m in imports(path)}, path


@pytest.mark.parametrize("package", PACKAGES)
def test_nothing_is_wired_by_name(package: str) -> None:
    for path in modules(package):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"__import__\(|import_module\(|_optional\(", text), path


@pytest.mark.parametrize("package", PACKAGES)
def test_sql_lives_in_repository_modules(package: str) -> None:
    for path in modules(package):
        if path.stem.endswith("repository") or path.name == "db.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert not SQL.search(node.value), f"{path.relative_to(ROOT)}: {node.value[:60]!r}"


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_do_no_io(module: str) -> None:
    found = imports(ROOT / module)
    assert not [m for m in found for io in IO_MODULES if m == io or m.startswith(io + ".")]


def test_the_rules_see_the_code() -> None:
    """The checks above would pass vacuously on an empty tree: make sure they read real modules."""
    assert len(modules("invoicing")) > 15 and "asyncpg" in imports(ROOT / "invoicing/chain_repository.py")
    assert SQL.search(ast.literal_eval(repr("SELECT id FROM invoices")))
