"""The sdist and the wheel, as a container installs Helix with a plain `pip install .`."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PACKAGES = ("helix", "projections", "migrations")


def _git_files(*patterns: str) -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", *patterns],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return [name for name in listed.stdout.split() if (ROOT / name).exists()]


class Dist:
    def __init__(self, sdist: set[str], wheel: set[str]) -> None:
        self.sdist = sdist
        self.wheel = wheel


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    # Built from the project's own files alone, as in a fresh clone: a checkout's leftovers
    # (an editable install's egg-info) would otherwise fill in what the package data misses.
    # `build` makes the sdist, then the wheel from the unpacked sdist, so a file the sdist
    # leaves out is missing from the wheel too.
    tmp_path = tmp_path_factory.mktemp("dist")
    source = tmp_path / "source"
    for name in _git_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    out = tmp_path / "out"
    built = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    # setuptools warns, and carries on, when a directory of modules is left out of `packages`.
    assert "Package would be ignored" not in built.stdout + built.stderr
    (sdist,) = out.glob("helix-*.tar.gz")
    (wheel,) = out.glob("helix-*.whl")
    with tarfile.open(sdist) as archive:
        top = archive.getnames()[0].split("/")[0]
        sdist_names = {name.removeprefix(f"{top}/") for name in archive.getnames()}
    return Dist(sdist_names, set(zipfile.ZipFile(wheel).namelist()))


def test_the_wheel_carries_every_migration_and_the_files_alembic_reads(dist: Dist) -> None:
    revisions = {
        f"migrations/versions/{p.name}" for p in (ROOT / "migrations/versions").glob("*.py")
    }
    assert revisions and revisions <= dist.wheel
    assert {"migrations/env.py", "migrations/script.py.mako"} <= dist.wheel
    sql = set(_git_files("*.sql"))
    assert sql and sql <= dist.wheel


def test_the_wheel_carries_every_file_of_the_packages_tracked_in_the_repository(
    dist: Dist,
) -> None:
    tracked = set(_git_files(*PACKAGES))
    data = {name for name in tracked if not name.endswith(".py")}
    # The data files are the ones setuptools does not pick up by itself: SQL, templates, markers.
    assert {"helix/py.typed", "migrations/script.py.mako", "helix/health.sql"} <= data
    assert sorted(tracked - dist.wheel) == []
    tops = {name.split("/")[0] for name in dist.wheel}
    assert {top for top in tops if not top.endswith(".dist-info")} == set(PACKAGES)


def test_the_sdist_carries_the_packages_the_tests_and_the_alembic_config(dist: Dist) -> None:
    wanted = set(_git_files(*PACKAGES, "tests", "alembic.ini", "docker", ".ci"))
    wanted |= {"README.md", "CHANGELOG.md", "setup.cfg", "pyproject.toml", "MANIFEST.in"}
    assert sorted(wanted - dist.sdist) == []
    assert not [name for name in dist.sdist if "__pycache__" in name or name.endswith(".pyc")]


def _dockerfile_copies() -> list[str]:
    """The sources of the Dockerfile's `COPY` lines: what the image's `pip install .` sees."""
    copied = []
    for line in (ROOT / "docker/Dockerfile").read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"]:
            copied += [w for w in words[1:-1] if not w.startswith("--")]
    return copied


def test_the_image_builds_the_same_wheel_from_what_the_dockerfile_copies(
    dist: Dist, tmp_path: Path
) -> None:
    """The image runs `pip install .` on the files its Dockerfile copies (and no others): the
    wheel built from those alone is the one the smoke test installs and runs."""
    context = tmp_path / "image"
    copied = _dockerfile_copies()
    assert {"setup.cfg", "pyproject.toml", *PACKAGES} <= set(copied)
    for name in _git_files(*copied):
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, context / name)
    out = tmp_path / "out"
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(context)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = out.glob("helix-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert sorted(dist.wheel ^ names) == []
