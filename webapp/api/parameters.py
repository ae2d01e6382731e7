"""Path and query parameters that several routes share, declared once so that /schema and the
refusals agree: a run id is at most RUN_ID_MAX_LENGTH characters wherever a route takes one."""

from __future__ import annotations

from typing import Annotated

from litestar.params import Parameter

RUN_ID_MAX_LENGTH = 64  # run ids are 16 hex characters; anything far longer is no run's

RunId = Annotated[str, Parameter(description="Run id", max_length=RUN_ID_MAX_LENGTH)]
OptionalRunId = Annotated[str | None, Parameter(description="Run id", max_length=RUN_ID_MAX_LENGTH)]
