"""What can go wrong, each saying what happened."""


class S3ChaosError(Exception):
    """Base of every error this package raises."""


class BinaryNotFound(S3ChaosError):
    """The ``s3chaos`` binary is not installed where this package looks for it."""


class StartupError(S3ChaosError):
    """The binary did not start (its output's end is in the message)."""


class PortInUse(StartupError):
    """The address asked for with ``listen=`` is taken."""


class ApiError(S3ChaosError):
    """The admin API refused a call (``status``; the API's own reason in the message), or
    could not be reached (``status`` 0)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
