"""s3chaos for tests: start the fault-injecting S3 proxy, put faults in front of your code,
read what happened.

>>> from s3chaos import Proxy                                    # doctest: +SKIP
>>> with Proxy() as proxy:
...     s3 = proxy.boto3_client()
...     s3.create_bucket(Bucket="demo")
...     with proxy.fault(operation="GetObject", error="SlowDown", limit=1):
...         ...   # your code's GETs meet one 503 SlowDown
...     proxy.verdicts()

With pytest, the ``s3chaos`` fixture (this package's plugin) gives each test a proxy and an
isolation scope of its own; ``@pytest.mark.s3chaos(scenario="builtin:slowdown-storm")`` runs
a test against its own proxy with that scenario.
"""

from ._errors import ApiError, BinaryNotFound, PortInUse, S3ChaosError, StartupError
from ._proxy import DEFAULT_TTL, SCOPE_HEADER, Fault, Proxy, find_binary
from ._scope import Scope

__all__ = [
    "ApiError",
    "BinaryNotFound",
    "DEFAULT_TTL",
    "Fault",
    "PortInUse",
    "Proxy",
    "S3ChaosError",
    "SCOPE_HEADER",
    "Scope",
    "StartupError",
    "find_binary",
]
