"""The pytest plugin, run as a user runs it (pytester: a test file in a fresh directory)."""

import importlib.util

import pytest

USER_TESTS = '''
import pytest
from botocore.exceptions import ClientError


def test_one_scope_faulted(s3chaos):
    s3 = s3chaos.boto3_client(retries={"total_max_attempts": 1})
    s3.create_bucket(Bucket="plugin-a")
    with s3chaos.fault(operation="PutObject", error="SlowDown"):
        with pytest.raises(ClientError):
            s3.put_object(Bucket="plugin-a", Key="k", Body=b"x")
    s3.put_object(Bucket="plugin-a", Key="k", Body=b"x")


def test_a_fault_left_behind_is_cleared(s3chaos):
    s3chaos.fault(operation="HeadBucket", error="InternalError")


def test_the_next_test_does_not_meet_it(s3chaos):
    s3 = s3chaos.boto3_client(retries={"total_max_attempts": 1})
    s3.create_bucket(Bucket="plugin-b")
    s3.head_bucket(Bucket="plugin-b")
    assert not [r for r in s3chaos.rules() if r["source"] == "api"], "the last test's rule was removed"


@pytest.mark.s3chaos(scenario="builtin:slowdown-storm")
def test_a_marked_test_gets_its_own_proxy_with_the_scenario(s3chaos):
    names = [r["name"] for r in s3chaos.rules()]
    assert names and all(not n.startswith("api/") for n in names)
'''


def test_the_fixture_and_the_marker(pytester):
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-q")
    result.assert_outcomes(passed=4)


@pytest.mark.skipif(importlib.util.find_spec("xdist") is None, reason="pytest-xdist is not installed")
def test_parallel_workers_under_one_exec_proxy_keep_to_their_scopes(pytester, tmp_path):
    """`s3chaos exec -- pytest -n 2`: both workers share exec's proxy, each test in its own
    scope, one test's permanent fault invisible to the other running at the same time."""
    import subprocess
    import sys

    pytester.makepyfile(
        test_parallel='''
import pathlib, time
from botocore.exceptions import ClientError

HERE = pathlib.Path(__file__).parent

def _meet(step, me, other):
    # Both tests reach each step before either goes on: they run at the same time.
    (HERE / f"{me}.{step}").touch()
    deadline = time.monotonic() + 30
    while not (HERE / f"{other}.{step}").exists():
        assert time.monotonic() < deadline, f"{other} never reached {step}: not run in parallel"
        time.sleep(0.02)

def _run(s3chaos, bucket, faulted):
    me, other = ("a", "b") if faulted else ("b", "a")
    s3 = s3chaos.boto3_client(retries={"total_max_attempts": 1})
    s3.create_bucket(Bucket=bucket)
    if faulted:
        s3chaos.fault(operation="PutObject", error="InternalError")
    _meet("faulted", me, other)
    for _ in range(10):
        try:
            s3.put_object(Bucket=bucket, Key="k", Body=b"x")
            got = "ok"
        except ClientError as e:
            got = e.response["Error"]["Code"]
        assert got == ("InternalError" if faulted else "ok")
        time.sleep(0.05)
    _meet("done", me, other)

def test_faulted(s3chaos):
    _run(s3chaos, "par-a", True)

def test_clean(s3chaos):
    _run(s3chaos, "par-b", False)
'''
    )
    import s3chaos

    binary = s3chaos.find_binary()
    done = subprocess.run(
        [binary, "exec", "--data-dir", str(tmp_path / "data"), "--", sys.executable, "-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider"],
        cwd=pytester.path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout, done.stdout
