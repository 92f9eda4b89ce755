"""The pytest plugin (entry point ``s3chaos``): fixtures and the ``s3chaos`` marker.

- ``s3chaos_proxy`` (session): one proxy for the whole run, or the one ``s3chaos exec``
  started when ``S3CHAOS_ENDPOINT`` and ``S3CHAOS_ADMIN`` are set (then every pytest-xdist
  worker shares it).
- ``s3chaos`` (function): a :class:`s3chaos.Scope` of that proxy for one test: its own
  isolation scope (so parallel tests do not see each other's faults), its rules removed
  after the test. Under ``@pytest.mark.s3chaos(scenario=..., **options)`` the test gets a
  proxy of its own running that scenario instead.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Iterator

import pytest

from ._proxy import Proxy
from ._scope import Scope


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "s3chaos(scenario=None, upstream=None, **options): run the test against its own "
        "s3chaos proxy started with that scenario (a path, builtin:NAME or YAML text)",
    )


def scope_for(nodeid: str) -> str:
    """A test's isolation scope: readable, unique, header-safe."""
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "-", nodeid)[-48:].strip("-")
    digest = hashlib.sha1(nodeid.encode()).hexdigest()[:8]
    return f"test-{readable}-{digest}"


@pytest.fixture(scope="session")
def s3chaos_proxy() -> Iterator[Proxy]:
    endpoint, admin = os.environ.get("S3CHAOS_ENDPOINT"), os.environ.get("S3CHAOS_ADMIN")
    if endpoint and admin:
        yield Proxy.attach(endpoint, admin, os.environ.get("S3CHAOS_ADMIN_TOKEN"))
        return
    proxy = Proxy().start()
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
def s3chaos(request: pytest.FixtureRequest) -> Iterator[Scope]:
    marker = request.node.get_closest_marker("s3chaos")
    if marker is not None:
        proxy = Proxy(*marker.args, **marker.kwargs).start()
        try:
            yield Scope(proxy, None)
        finally:
            proxy.close()
        return
    scope = Scope(request.getfixturevalue("s3chaos_proxy"), scope_for(request.node.nodeid))
    try:
        yield scope
    finally:
        scope.clear()
