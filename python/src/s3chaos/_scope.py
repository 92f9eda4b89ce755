"""One test's view of a shared proxy: its own isolation scope, its own rules."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from ._proxy import Fault, Proxy


class Scope:
    """A proxy seen through one isolation scope (what the ``s3chaos`` fixture gives a test).

    Its clients send the scope header, its faults are rules of that scope, so tests running
    at the same time on one proxy (pytest-xdist) never meet each other's faults; :meth:`clear`
    removes its rules (the fixture does, after each test)."""

    def __init__(self, proxy: Proxy, scope: Optional[str]) -> None:
        self.proxy = proxy
        self.scope = scope
        self._faults: List[Fault] = []

    @property
    def endpoint_url(self) -> str:
        return self.proxy.endpoint_url

    @property
    def admin_url(self) -> str:
        return self.proxy.admin_url

    def boto3_client(self, **config: Any) -> Any:
        """A boto3 S3 client whose requests carry this scope (see :meth:`Proxy.boto3_client`)."""
        return self.proxy.boto3_client(scope=self.scope, **config)

    def fault(self, *args: Any, **kwargs: Any) -> Fault:
        """A fault for this scope's requests only (see :meth:`Proxy.fault`)."""
        kwargs.setdefault("scope", self.scope)
        fault = self.proxy.fault(*args, **kwargs)
        self._faults.append(fault)
        return fault

    def rules(self) -> List[Dict[str, Any]]:
        return self.proxy.rules()

    def events(self) -> List[Dict[str, Any]]:
        return self.proxy.events()

    def verdicts(self) -> Dict[str, Any]:
        return self.proxy.verdicts()

    def halt(self, reason: Optional[str] = None) -> Dict[str, Any]:
        """Halts every fault of the proxy (every scope's: it is the kill switch)."""
        return self.proxy.halt(reason)

    def resume(self) -> Dict[str, Any]:
        return self.proxy.resume()

    def clear(self) -> None:
        """Removes every rule this scope added."""
        faults, self._faults = self._faults, []
        for fault in faults:
            fault.remove()
