"""Fixtures of the packaging tests: the image's install steps, done once per test run."""

from __future__ import annotations

import fcntl
import os
import shutil

import pytest

from tests.packaging import image


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> image.Installed:
    """The wheels and a fresh venv made by the Dockerfile's steps.

    Building and installing takes about a minute, so the test processes of one run share the
    result: under xdist each worker's base temp folder sits in the run's own folder, where the
    first worker builds under a lock and the others reuse what it made.
    """
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    root = shared / "packaging"
    with (shared / "packaging.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = root / "installed"
        if done.exists():
            return image.Installed(root / "wheels", root / "venv")
        # A half-done attempt (a worker that failed before) starts over.
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir()
        made = image.install(root)
        done.touch()
        return made
