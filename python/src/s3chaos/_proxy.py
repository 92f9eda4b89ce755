"""The s3chaos binary as a context manager, and its admin API as methods."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from ._errors import ApiError, BinaryNotFound, PortInUse, StartupError

#: The header that puts a request in an isolation scope: it meets only its scope's rules.
SCOPE_HEADER = "x-s3chaos-scope"

#: How long a rule added by :meth:`Proxy.fault` lives if the test never removes it (a test
#: killed mid-way must not leave a fault behind for the next one).
DEFAULT_TTL = "5m"

Rule = Dict[str, Any]


def find_binary(explicit: Optional[Union[str, os.PathLike]] = None) -> str:
    """The ``s3chaos`` binary to run: ``explicit``, else ``$S3CHAOS_BINARY``, else the one this
    package's wheel installed next to the Python interpreter, else the first on ``PATH``. A
    binary named explicitly or by the variable must exist: no silent fallback."""
    for named, origin in ((explicit, "binary="), (os.environ.get("S3CHAOS_BINARY"), "S3CHAOS_BINARY")):
        if named:
            if os.path.isfile(named) and os.access(named, os.X_OK):
                return str(named)
            raise BinaryNotFound(f"{origin} names {named}, which is not an executable file")
    beside = os.path.join(sysconfig.get_path("scripts"), "s3chaos")
    if os.path.isfile(beside) and os.access(beside, os.X_OK):
        return beside
    on_path = shutil.which("s3chaos")
    if on_path:
        return on_path
    raise BinaryNotFound(
        f"cannot find the s3chaos binary (looked in {beside} and on PATH); install the s3chaos "
        "wheel, or set S3CHAOS_BINARY to the binary's path"
    )


class Proxy:
    """A running s3chaos: started on free loopback ports, stopped on exit.

    Without ``upstream`` it serves an embedded S3 store in a temporary directory (any
    credentials work). ``scenario`` is a file path, ``builtin:NAME``, or the scenario's YAML
    text. Every other keyword becomes a ``s3chaos run`` option (``workers=1`` gives
    ``--workers 1``; ``True`` gives the bare flag), and ``args`` are appended as they are.

    >>> with Proxy() as proxy:                                   # doctest: +SKIP
    ...     s3 = proxy.boto3_client()
    ...     s3.create_bucket(Bucket="demo")
    ...     with proxy.fault(operation="PutObject", error="SlowDown", limit=2):
    ...         s3.put_object(Bucket="demo", Key="k", Body=b"retried twice, then stored")
    """

    def __init__(
        self,
        scenario: Optional[str] = None,
        upstream: Optional[str] = None,
        *,
        binary: Optional[Union[str, os.PathLike]] = None,
        listen: str = "127.0.0.1:0",
        admin_token: Optional[str] = None,
        args: Sequence[str] = (),
        start_timeout: float = 20.0,
        **options: Any,
    ) -> None:
        self.scenario = scenario
        self.upstream = upstream
        self.binary = binary
        self.listen = listen
        self.admin_token = admin_token
        self.args = list(args)
        self.start_timeout = start_timeout
        self.options = options
        self.endpoint_url: str = ""
        self.admin_url: str = ""
        self.events_path: Optional[Path] = None
        self._process: Optional[subprocess.Popen] = None
        self._dir: Optional[tempfile.TemporaryDirectory] = None
        self._log: Optional[Path] = None

    # -- life cycle ------------------------------------------------------------------------

    @classmethod
    def attach(cls, endpoint_url: str, admin_url: str, admin_token: Optional[str] = None) -> "Proxy":
        """A proxy somebody else runs (``s3chaos exec -- pytest -n 4`` exports
        ``S3CHAOS_ENDPOINT`` and ``S3CHAOS_ADMIN``): used, never started or stopped."""
        proxy = cls(admin_token=admin_token)
        proxy.endpoint_url = endpoint_url.rstrip("/")
        proxy.admin_url = admin_url.rstrip("/")
        return proxy

    def start(self) -> "Proxy":
        """Starts the binary and waits until both listeners are bound."""
        if self._process is not None or self.endpoint_url:
            return self
        binary = find_binary(self.binary)
        self._dir = tempfile.TemporaryDirectory(prefix="s3chaos-")
        work = Path(self._dir.name)
        ready = work / "ready.json"
        self.events_path = work / "events.jsonl"
        self._log = work / "s3chaos.log"
        command = [
            binary,
            "run",
            "--listen",
            self.listen,
            "--admin",
            "127.0.0.1:0",
            "--events",
            str(self.events_path),
            "--ready-file",
            str(ready),
        ]
        if self.upstream:
            command += ["--upstream", self.upstream]
        else:
            command += ["--data-dir", str(work / "data")]
        if self.scenario:
            command += ["--scenario", self._scenario_argument(work)]
        if self.admin_token:
            command += ["--admin-token", self.admin_token]
        for name, value in self.options.items():
            flag = "--" + name.replace("_", "-")
            if value is True:
                command.append(flag)
            elif value not in (None, False):
                command += [flag, str(value)]
        command += self.args
        with open(self._log, "wb") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + self.start_timeout
        while not ready.exists():
            if self._process.poll() is not None:
                self._fail_start(f"s3chaos exited with status {self._process.returncode} before it was ready")
            if time.monotonic() > deadline:
                self._process.kill()
                self._process.wait()
                self._fail_start(f"s3chaos was not ready within {self.start_timeout:g}s")
            time.sleep(0.02)
        addresses = json.loads(ready.read_text())
        self.endpoint_url = addresses["endpoint"]
        self.admin_url = addresses.get("admin") or ""
        return self

    def _scenario_argument(self, work: Path) -> str:
        text = self.scenario or ""
        if "\n" in text:
            # YAML text: written to a file the proxy watches like any other.
            path = work / "scenario.yaml"
            path.write_text(text)
            return str(path)
        return text

    def _fail_start(self, why: str) -> None:
        output = self._log.read_text(errors="replace") if self._log else ""
        tail = "\n".join(output.splitlines()[-15:])
        error = PortInUse if "Address already in use" in output or "address in use" in output else StartupError
        if error is PortInUse:
            why = f"{why}: the address {self.listen} is already in use"
        self._process = None
        raise error(f"{why}. Its output:\n{tail}")

    def stop(self) -> Optional[Path]:
        """Stops the binary (SIGTERM: requests in flight finish) and returns the event log's
        path. The temporary directory goes with the object (or :meth:`close`)."""
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return self.events_path

    def close(self) -> None:
        """Stops the binary and removes its temporary directory (event log included)."""
        self.stop()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> "Proxy":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __del__(self) -> None:
        process = getattr(self, "_process", None)
        if process is not None and process.poll() is None:
            process.kill()

    # -- clients ---------------------------------------------------------------------------

    def boto3_client(self, scope: Optional[str] = None, **config: Any) -> Any:
        """A boto3 S3 client for this proxy: path-style, test credentials, ``us-east-1``.
        With ``scope``, every request carries the scope header (signed), so it meets only
        that scope's rules. Keywords go to ``botocore.config.Config``."""
        import boto3
        from botocore.config import Config

        settings: Dict[str, Any] = {"s3": {"addressing_style": "path"}}
        settings.update(config)
        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test") if self.upstream else "test",
            aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test") if self.upstream else "test",
            region_name="us-east-1",
            config=Config(**settings),
        )
        if scope:

            def add_scope(request: Any, **_: Any) -> None:
                request.headers[SCOPE_HEADER] = scope

            client.meta.events.register("before-sign.s3", add_scope)
        return client

    # -- faults ----------------------------------------------------------------------------

    def fault(
        self,
        fault: Union[str, Mapping[str, Any], None] = None,
        *,
        operation: Union[str, Sequence[str], None] = None,
        bucket: Optional[str] = None,
        key: Optional[str] = None,
        match: Optional[Mapping[str, Any]] = None,
        name: Optional[str] = None,
        limit: Optional[int] = None,
        probability: Optional[float] = None,
        skip: Optional[int] = None,
        nth: Optional[int] = None,
        ttl: Optional[str] = DEFAULT_TTL,
        scope: Optional[str] = None,
        **faults: Any,
    ) -> "Fault":
        """Adds a rule now and returns it; as a context manager it is removed on exit.

        The faults are keywords named as in a scenario file (``error="SlowDown"``,
        ``latency="2s"``, ``reset=True``, ``blackhole=True``, ``truncate={"after_bytes": 10}``),
        or ``fault`` as a scenario file writes it. ``ttl`` removes the rule by itself after
        that long, in case the test dies before it can."""
        spec: Dict[str, Any] = {} if fault is None else ({fault: {}} if isinstance(fault, str) else dict(fault))
        for kind, value in faults.items():
            spec[kind] = {} if value is True else value
        if not spec:
            raise ValueError("a fault needs at least one fault kind (error=..., latency=..., reset=True...)")
        rule: Rule = {"fault": spec}
        matcher = dict(match or {})
        for field, value in (("operation", operation), ("bucket", bucket), ("key", key)):
            if value is not None:
                matcher[field] = value if isinstance(value, str) else list(value)
        if matcher:
            rule["match"] = matcher
        for field, value in (
            ("name", name),
            ("limit", limit),
            ("probability", probability),
            ("skip", skip),
            ("nth", nth),
            ("ttl", ttl),
            ("scope", scope),
        ):
            if value is not None:
                rule[field] = value
        return Fault(self, self.add_rule(rule))

    def add_rule(self, rule: Rule) -> str:
        """Adds a rule (a scenario file's rule, as a dict; ``ttl`` allowed) and returns its
        name (``api/NAME``). A rule the API refuses raises :class:`ApiError` with its reason."""
        return self._call("POST", "/rules", rule)["added"]

    def remove_rule(self, name: str) -> None:
        """Removes a rule added at run time (``NAME`` or ``api/NAME``)."""
        self._call("DELETE", "/rules/" + urllib.request.quote(name.split("/", 1)[-1], safe=""))

    def rules(self) -> List[Dict[str, Any]]:
        """Every rule in force, with its counters (``matched``, ``injected``)."""
        return self._call("GET", "/rules")["rules"]

    def halt(self, reason: Optional[str] = None) -> Dict[str, Any]:
        """The kill switch: every fault off until :meth:`resume`."""
        return self._call("POST", "/halt", {"reason": reason} if reason else None)

    def resume(self) -> Dict[str, Any]:
        return self._call("POST", "/resume")

    def status(self) -> Dict[str, Any]:
        return self._call("GET", "/status")

    def verdicts(self) -> Dict[str, Any]:
        """The drill judged so far (did the clients retry with backoff, recover, close their
        uploads...): ``{"verdicts": [{"expectation", "status", "summary", "evidence"}...]}``."""
        return self._call("GET", "/verdicts")

    def events(self) -> List[Dict[str, Any]]:
        """Every request the proxy has logged so far, oldest first (one dict per line of the
        event log: operation, key, status, outcome, the rule that fired...)."""
        if self.events_path is None:
            raise ApiError(0, "no event log: this proxy was attached, not started by this object")
        if not self.events_path.exists():
            return []
        lines = self.events_path.read_text().splitlines()
        return [e for e in map(_json_or_none, lines) if e is not None and "operation" in e]

    def _call(self, method: str, path: str, body: Optional[Any] = None) -> Dict[str, Any]:
        if not self.admin_url:
            raise ApiError(0, "this proxy has no admin API (was it started?)")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.admin_url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.admin_token:
            request.add_header("Authorization", "Bearer " + self.admin_token)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as e:
            text = e.read().decode(errors="replace")
            message = (_json_or_none(text) or {}).get("error") or text.strip() or e.reason
            raise ApiError(e.code, f"{method} {path}: {message}") from None
        except urllib.error.URLError as e:
            raise ApiError(0, f"{method} {path}: cannot reach the admin API at {self.admin_url}: {e.reason}") from None
        return _json_or_none(text) or {}


class Fault:
    """A rule added at run time; removed by :meth:`remove` or when its ``with`` block ends."""

    def __init__(self, proxy: Proxy, name: str) -> None:
        self.proxy = proxy
        self.name = name
        self.removed = False

    def remove(self) -> None:
        """Removes the rule (once; a rule its TTL already removed is fine)."""
        if self.removed:
            return
        self.removed = True
        try:
            self.proxy.remove_rule(self.name)
        except ApiError as e:
            if e.status != 404:
                raise

    def stats(self) -> Dict[str, Any]:
        """The rule's counters: ``matched`` and ``injected``."""
        for rule in self.proxy.rules():
            if rule.get("name") == self.name:
                return rule
        raise ApiError(404, f"the rule {self.name} is no longer in force")

    def __enter__(self) -> "Fault":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


def _json_or_none(text: str) -> Optional[Dict[str, Any]]:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None

