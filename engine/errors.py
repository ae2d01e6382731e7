"""Engine errors that carry a message meant for the user."""


class EngineError(Exception):
    """Base class; ``str(err)`` is shown to the user as is."""


class UnknownModelError(EngineError):
    def __init__(self, name: str, available: list[str]):
        self.name = name
        self.available = available
        super().__init__(f"unknown model {name!r}; available: {', '.join(available)}")


class UnknownHardwareError(EngineError):
    def __init__(self, name: str, available: list[str]):
        self.name = name
        self.available = available
        super().__init__(f"hardware {name!r} is not present on this machine; present: {', '.join(available)}")


class ModelLoadError(EngineError):
    """A model exists by name but cannot be built here (offline Hub id, bad checkpoint)."""


class InvalidRequestError(EngineError):
    """A run request with a bad field; ``field`` names it for the API and forms."""

    def __init__(self, field: str, reason: str):
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class UnknownRunError(EngineError):
    """No run has this id; ``field`` is the parameter that named it (a comparison's ``contender``)."""

    def __init__(self, run_id: str, field: str = "run_id"):
        self.run_id = run_id
        self.field = field
        super().__init__(f"no run with id {run_id!r}")


class UnknownResultError(EngineError):
    """No result ``result_id`` belongs to run ``run_id``."""

    def __init__(self, run_id: str, result_id: int):
        self.run_id = run_id
        self.result_id = result_id
        super().__init__(f"run {run_id!r} has no result {result_id}")


class UnsupportedConfigError(EngineError, ValueError):
    """A config this model cannot run as asked (an attention implementation it lacks, an
    image size its position embeddings cannot take): the config is incompatible, not broken."""
