"""The distribution works outside a checkout: a wheel built from the tree (not an editable install) carries the
migrations, and its `invoiceloop migrate` applies every one of them to an empty database. `migrate` refuses
loudly when it finds no migration at all."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from invoicing import db
from tests.conftest import scratch_database

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project built as a wheel and installed (without its dependencies, which the test environment has)
    into a folder of its own."""
    base = tmp_path_factory.mktemp("dist")
    source, wheels, target = base / "source", base / "wheels", base / "site"
    # a copy of the tree as it is, so no earlier build's leftovers in build/ can get into the wheel
    shutil.copytree(
        ROOT, source, ignore=shutil.ignore_patterns(".*", "build", "test-output", "__pycache__", "*.egg-info")
    )
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(source)]
    subprocess.run(build, check=True, capture_output=True, timeout=300)
    [wheel] = wheels.glob("invoiceloop-*.whl")
    install = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=300)
    return target


def run_installed(target: Path, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m invoiceloop ...` importing the packages from `target`, run outside the checkout."""
    environment = {**os.environ, "PYTHONPATH": str(target), **env}
    return subprocess.run(
        [sys.executable, "-m", "invoiceloop", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_package_of_the_tree_is_in_the_wheel(installed: Path) -> None:
    for package in ("invoicing", "verification", "delivery", "invoiceloop"):
        for init in (ROOT / package).rglob("__init__.py"):
            assert (installed / init.relative_to(ROOT)).exists(), f"{init.parent} is not packaged (pyproject.toml)"


def test_the_installed_package_is_the_one_that_runs(installed: Path, tmp_path: Path) -> None:
    where = subprocess.run(
        [sys.executable, "-c", "import invoicing.db as d; print(d.__file__); print(d.migrations_dir())"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(installed)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert all(Path(p).is_relative_to(installed) for p in where), where


def test_a_non_editable_install_migrates_an_empty_database(installed: Path, tmp_path: Path, server_url: str) -> None:
    with scratch_database(server_url, f"invoiceloop_pkg_{uuid.uuid4().hex[:8]}") as url:
        done = run_installed(installed, tmp_path, "migrate", DATABASE_URL=url)
        assert done.returncode == 0, done.stderr
        count = len(db.migration_files())
        assert f"{count} applied, 0 already applied" in done.stdout
        again = run_installed(installed, tmp_path, "migrate", DATABASE_URL=url)
        assert f"0 applied, {count} already applied" in again.stdout


def test_migrate_refuses_when_it_finds_no_migration(tmp_path: Path) -> None:
    with pytest.raises(db.NoMigrations, match="no migrations"):
        db.migration_files(tmp_path)


def test_the_page_and_its_proof_of_work_widget_are_in_the_wheel(installed: Path) -> None:
    """The verify page's templates and the self-hosted ALTCHA widget (no CDN) ship with the package."""
    for name in (
        "templates/verify.html",
        "templates/challenge_head.html",
        "templates/challenge_form.html",
        "static/verify-challenge.js",
        "static/altcha/altcha.min.js",
        "static/altcha/altcha.css",
        "static/altcha/pbkdf2.js",
        "static/altcha/LICENSE.txt",
    ):
        assert (installed / "verification" / name).exists(), f"verification/{name} is not packaged (pyproject.toml)"
