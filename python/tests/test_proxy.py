"""The package against the real binary: boto3 meeting each scoped fault, and the errors."""

import socket
import threading

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

import s3chaos
from s3chaos import ApiError, BinaryNotFound, PortInUse, Proxy


@pytest.fixture(scope="module")
def proxy():
    with Proxy() as p:
        p.boto3_client().create_bucket(Bucket="pkg")
        yield p
    p.close()


def no_retries(proxy, scope=None):
    return proxy.boto3_client(scope=scope, retries={"total_max_attempts": 1})


def test_endpoints_and_a_round_trip(proxy):
    assert proxy.endpoint_url.startswith("http://127.0.0.1:")
    assert proxy.admin_url.startswith("http://127.0.0.1:")
    s3 = proxy.boto3_client()
    s3.put_object(Bucket="pkg", Key="hello", Body=b"world")
    assert s3.get_object(Bucket="pkg", Key="hello")["Body"].read() == b"world"
    assert any(e["key"] == "hello" and e["operation"] == "PutObject" for e in proxy.events())


def test_a_scoped_fault_meets_boto3_and_goes_away_on_exit(proxy):
    s3 = proxy.boto3_client(retries={"mode": "standard", "total_max_attempts": 3})
    with proxy.fault(operation="PutObject", key="retried", error="SlowDown", limit=2) as fault:
        s3.put_object(Bucket="pkg", Key="retried", Body=b"x")  # two 503s, then stored
        assert fault.stats()["injected"] == 2
        assert fault.name in [r["name"] for r in proxy.rules()]
    assert fault.name not in [r["name"] for r in proxy.rules()]
    faulted = [e for e in proxy.events() if e["key"] == "retried" and e.get("rule") == fault.name]
    assert [e["status"] for e in faulted] == [503, 503]


@pytest.mark.parametrize(
    "kinds, expect",
    [
        ({"error": "InternalError"}, "InternalError"),
        ({"error": {"code": "AccessDenied"}}, "AccessDenied"),
        ({"clock_skew": "20m"}, "RequestTimeTooSkewed"),
    ],
)
def test_each_error_fault_reaches_boto3_as_s3s_own(proxy, kinds, expect):
    with proxy.fault(operation="GetObject", key="hello", **kinds):
        with pytest.raises(ClientError) as raised:
            no_retries(proxy).get_object(Bucket="pkg", Key="hello")
    assert raised.value.response["Error"]["Code"] == expect


def test_connection_faults_reach_boto3(proxy):
    from botocore.exceptions import ConnectionClosedError, ReadTimeoutError

    with proxy.fault(operation="GetObject", key="hello", reset=True):
        with pytest.raises(ConnectionClosedError):
            no_retries(proxy).get_object(Bucket="pkg", Key="hello")
    impatient = proxy.boto3_client(retries={"total_max_attempts": 1}, read_timeout=1)
    with proxy.fault(operation="GetObject", key="hello", blackhole=True):
        with pytest.raises(ReadTimeoutError):
            impatient.get_object(Bucket="pkg", Key="hello")
    assert no_retries(proxy).get_object(Bucket="pkg", Key="hello")["Body"].read() == b"world"


def test_parallel_scopes_do_not_see_each_others_faults(proxy):
    proxy.fault(operation="GetObject", error="SlowDown", scope="alice")
    results = {}
    barrier = threading.Barrier(2)

    def run(who):
        s3 = no_retries(proxy, scope=who)
        barrier.wait()
        outcomes = []
        for _ in range(5):
            try:
                s3.get_object(Bucket="pkg", Key="hello")["Body"].read()
                outcomes.append("ok")
            except ClientError as e:
                outcomes.append(e.response["Error"]["Code"])
        results[who] = outcomes

    threads = [threading.Thread(target=run, args=(who,)) for who in ("alice", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {"alice": ["SlowDown"] * 5, "bob": ["ok"] * 5}
    # An unscoped client meets no scoped rule either.
    assert no_retries(proxy).get_object(Bucket="pkg", Key="hello")["Body"].read() == b"world"


def test_halt_and_resume(proxy):
    with proxy.fault(operation="HeadObject", error="InternalError"):
        proxy.halt("game over")
        assert proxy.status()["halted"]
        no_retries(proxy).head_object(Bucket="pkg", Key="hello")  # halted: passes
        proxy.resume()
        with pytest.raises(ClientError):
            no_retries(proxy).head_object(Bucket="pkg", Key="hello")


def test_verdicts_judge_what_happened(proxy):
    verdicts = proxy.verdicts()
    names = {v["expectation"] for v in verdicts["verdicts"]}
    assert {"backoff", "no_open_multipart_uploads", "max_attempts"} <= names


def test_a_rule_the_api_refuses_says_why(proxy):
    with pytest.raises(ApiError) as raised:
        proxy.fault(operation="GetObject", error="SlowDwn")
    assert raised.value.status == 400
    assert "unknown S3 error code `SlowDwn`" in str(raised.value)
    with pytest.raises(ValueError):
        proxy.fault(operation="GetObject")


def test_a_missing_binary_says_what_was_asked(monkeypatch):
    monkeypatch.delenv("S3CHAOS_BINARY", raising=False)
    with pytest.raises(BinaryNotFound) as raised:
        Proxy(binary="/nonexistent/s3chaos").start()
    assert str(raised.value) == "binary= names /nonexistent/s3chaos, which is not an executable file"
    monkeypatch.setenv("S3CHAOS_BINARY", "/nonexistent/too")
    with pytest.raises(BinaryNotFound) as raised:
        Proxy().start()
    assert "S3CHAOS_BINARY names /nonexistent/too" in str(raised.value)


def test_a_port_in_use_is_named():
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        with pytest.raises(PortInUse) as raised:
            Proxy(listen=f"127.0.0.1:{port}").start()
        assert f"127.0.0.1:{port} is already in use" in str(raised.value)
    finally:
        taken.close()


def test_a_scenario_as_yaml_text_and_the_event_log_after_stop():
    scenario = "name: inline\nrules:\n  - {name: slow, match: {operation: ListBuckets}, fault: {error: SlowDown}}\n"
    with Proxy(scenario=scenario) as p:
        with pytest.raises(ClientError):
            no_retries(p).list_buckets()
    path = p.stop()
    assert path is not None and path.exists()
    assert "api/slow" not in path.read_text() and '"rule":"slow"' in path.read_text()
    p.close()
    assert not path.exists()


def test_the_package_exports_what_the_docs_use():
    assert s3chaos.SCOPE_HEADER == "x-s3chaos-scope"
    assert callable(s3chaos.find_binary)
