"""/favicon.ico, which a browser asks for by itself where a page names no icon: a text file
such as a run's report.md has no <link rel="icon">, and a 404 there is a console error.

The icon is 16 x 16, 32-bit: a blue square (the dashboard's accent, #2563eb) with three
white bars, written byte by byte; base.html links it and report.html inlines it."""

from __future__ import annotations

from pathlib import Path

from litestar import get
from litestar.datastructures import CacheControlHeader
from litestar.response import File

FAVICON = Path(__file__).parent.parent / "static" / "favicon.ico"


@get("/favicon.ico", name="favicon", include_in_schema=False, sync_to_thread=False,
     cache_control=CacheControlHeader(max_age=86_400))
def favicon() -> File:
    return File(path=FAVICON, filename="favicon.ico", media_type="image/vnd.microsoft.icon",
                content_disposition_type="inline")
