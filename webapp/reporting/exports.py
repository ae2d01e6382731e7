"""Result files written in Python from Arrow batches (DuckDB's COPY TO stays disabled)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from litestar.response import Stream

from storage import dashboard
from storage.dashboard import Filters

MEDIA_TYPES = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet", "json": "application/json"}
_WRITERS = {"csv": pa_csv.CSVWriter, "parquet": pq.ParquetWriter}


def file_chunks(batches: pa.RecordBatchReader, export_format: str) -> Iterator[bytes]:
    """The file in ``export_format``, handed on as it grows rather than held whole."""
    if export_format == "json":
        yield json.dumps(batches.read_all().to_pylist(), default=str).encode()
        return
    sink = io.BytesIO()
    with _WRITERS[export_format](sink, batches.schema) as writer:
        for batch in batches:
            writer.write_batch(batch)
            yield sink.getvalue()
            sink.seek(0)
            sink.truncate()
    yield sink.getvalue()  # what closing wrote: the Parquet footer


def download_headers(export_format: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="benchboard-results.{export_format}"'}


def export_response(services, filters: Filters, export_format: str, sort: str | None = None,
                    direction: str | None = None) -> Stream:
    """The filtered results as a streamed file: the API's /export and the Comparison page's downloads."""
    dashboard.check_sort(sort, direction)  # now: a streamed download cannot report an error once it started

    def chunks() -> Iterator[bytes]:
        # A sync iterator: Litestar pulls it in a worker thread, so DuckDB stays off the event loop.
        yield from file_chunks(dashboard.results_export(services.db, filters, sort=sort, direction=direction),
                               export_format)

    return Stream(chunks(), media_type=MEDIA_TYPES[export_format], headers=download_headers(export_format))
