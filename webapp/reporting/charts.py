"""Altair chart specs (Vega-Lite dicts) built from small, already aggregated DataFrames.

Each builder returns ``None`` when there is nothing to draw, so a page can show its empty
state instead of a blank chart. The pages embed the dicts as JSON; the vendored vega-embed
draws them in the browser.

Altair validates a chart against the Vega-Lite schema as it builds it, which costs
milliseconds per chart, more than the DuckDB aggregate behind it. So each chart's
shape is built (and validated) once per metric, reading a named dataset, and every
request only fills in its rows and title.

A chart's title is its ``description``: the page prints it as an HTML heading, which wraps
on a phone, where a Vega title would be cut off. Charts of aggregates never join unlike
results: a ``series`` (precision, sequence length or image size, scenario) is a line or a
colour of its own, every point says how many results it covers (``n``) and draws an error
bar where the metric has a CI, and a point with noisy results is drawn hollow or faded. A
point of one result is that result: its bar is the result's 95% CI. A point of several is
their mean, and its bar runs from the lowest to the highest bound of their 95% CIs
(storage.dashboard's ``_trust``): a range, not a confidence interval of the mean, and its
tooltip says so.
"""

from __future__ import annotations

import copy
import json
import math
import numbers
import re
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from functools import cache, lru_cache

import altair as alt
import pandas as pd

from storage.dashboard import Metric

NUMBER_FORMAT = ",.2~f"
CHART_HEIGHT = 280
HEATMAP_ROW_PX = 32
AUTO_BAR_PX = 22  # a bar of a SQL result's chart; one of a group of bars is narrower
AUTO_GROUPED_BAR_PX = 14
# Beyond this many categories a bar chart of SQL results stops being readable.
AUTO_CHART_MAX_BARS = 50
DATASET = "rows"  # the named dataset every template reads
MARKS = "marks"  # a second named dataset: reference lines (the median and its CI)
NOISY = "datum.noisy > 0"


def _template(chart: alt.Chart | alt.LayerChart) -> dict:
    # fit-x: as wide as the page allows; heights stay as each chart sets them.
    styled = (
        chart.properties(width="container", autosize=alt.AutoSizeParams(type="fit-x", contains="padding"))
        .configure_view(strokeWidth=0)
        .configure(font="system-ui, -apple-system, Segoe UI, Roboto, sans-serif")
        .configure_axis(labelFontSize=11, titleFontSize=12, labelLimit=180)
        # static/js/app.js sets the legend's columns to what the chart's width holds.
        .configure_legend(orient="bottom", direction="horizontal", titleOrient="top", labelLimit=160)
    )
    return styled.to_dict()


def _discrete_height(spec: dict, height: int) -> dict:
    """A chart whose rows are categories, as tall as its rows need: a height in pixels, not a
    {"step": ...} one, which Vega-Lite warns cannot go with the fit-x autosize (it drops it)."""
    spec["height"] = height
    return spec


def _error_bars_where_known(spec: dict, df: pd.DataFrame) -> dict:
    """No CI rule layer where no row has a CI (results stored without one): its scale would
    have no extent, which Vega warns of (an infinite extent for ci_low and ci_high)."""
    if "ci_low" in df and df["ci_low"].notna().any():
        return spec
    spec["layer"] = [layer for layer in spec["layer"] if layer["encoding"].get("y", {}).get("field") != "ci_low"]
    return spec


def _records(rows: pd.DataFrame | list[dict]) -> list[dict]:
    # to_json turns NaN into null, as JSON needs; numpy scalars into plain numbers.
    return json.loads(rows.to_json(orient="records", date_format="iso")) if isinstance(rows, pd.DataFrame) else rows


def _filled(template: dict, rows: pd.DataFrame | list[dict], title: str, **datasets) -> dict:
    spec = copy.deepcopy(template)
    spec["datasets"] = {DATASET: _records(rows), **{name: _records(value) for name, value in datasets.items()}}
    spec["description"] = title
    return spec


def _rows() -> alt.NamedData:
    return alt.NamedData(name=DATASET)


def _value(metric: Metric) -> alt.Y:
    return alt.Y("value:Q", title=metric.label, axis=alt.Axis(format=NUMBER_FORMAT))


def _value_tooltip(metric: Metric) -> alt.Tooltip:
    return alt.Tooltip("value:Q", title=metric.label, format=NUMBER_FORMAT)


def _trust_tooltips(has_ci: bool) -> list[alt.Tooltip]:
    """What every aggregated point says about itself: whether it is one result or the mean of
    several, its interval (that result's 95% CI, or the range of theirs), its n, its noisy
    results. The words come from ``_described``: a tooltip's titles are fixed, its values per point."""
    interval = [alt.Tooltip("interval:N", title="Interval")] if has_ci else []
    return [
        alt.Tooltip("value_is:N", title="Value is"),
        *interval,
        alt.Tooltip("n:Q", title="Results (n)"),
        alt.Tooltip("noisy:Q", title="Noisy results"),
    ]


def _number(value: float, digits: int) -> str:
    """``value`` as d3's ``,.{digits}~f`` prints it: thousands separated, trailing zeros trimmed."""
    text = f"{value:,.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _interval(low, high, n, digits: int) -> str:
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return "—"
    span = f"{_number(low, digits)} – {_number(high, digits)}"
    return f"{span}, its 95% CI" if n == 1 else f"{span}, the range of their {n} results' 95% CIs"


def _described(df: pd.DataFrame, has_ci: bool, digits: int = 2) -> pd.DataFrame:
    """Each aggregated point with what it is in words, for its tooltip: ``value_is`` (a single
    result's, or the mean of n results) and, where the metric has a CI, ``interval`` (that
    result's 95% CI, or the lowest to highest bound of the 95% CIs of the results it averages,
    which is no confidence interval of their mean). The numbers themselves are unchanged."""
    if "n" not in df:
        return df
    described = df.assign(
        value_is=["a single result's" if n == 1 else f"the mean of {n} results" for n in df["n"]]
    )
    if has_ci and "ci_low" in df and "ci_high" in df:
        bounds = zip(df["ci_low"], df["ci_high"], df["n"], strict=True)
        described = described.assign(interval=[_interval(low, high, n, digits) for low, high, n in bounds])
    return described


def _series_count(df: pd.DataFrame) -> int:
    return df["series"].nunique(dropna=False) if "series" in df else 1


@cache
def _hardware_comparison_template(metric: Metric, split: bool) -> dict:
    # One series: a bar per batch size, coloured by it. Several: a bar per batch size and
    # series, coloured by series, so no colour ever stands for two precisions.
    # Bars of one series side by side, batch sizes ascending (group_order, not the label's text).
    offset = (
        # op="min" (one row a group): without an op the two layers' sorts differ, and Vega-Lite
        # gives up sorting the shared offset scale (a console warning).
        alt.XOffset("group:N", sort=alt.EncodingSortField("group_order", op="min"))
        if split
        else alt.XOffset("batch_size:O")
    )
    color = (
        alt.Color("series:N", title="Precision · sequence length or image size")
        if split
        else alt.Color("batch_size:O", title="Batch size", scale=alt.Scale(scheme="blues"))
    )
    bars = alt.Chart().mark_bar().encode(
        y=_value(metric),
        color=color,
        opacity=alt.condition(NOISY, alt.value(0.45), alt.value(1.0)),
        tooltip=[
            alt.Tooltip("hardware:N", title="Hardware"),
            alt.Tooltip("device_name:N", title="Device"),
            alt.Tooltip("batch_size:O", title="Batch size"),
            alt.Tooltip("series:N", title="Precision · sequence length or image size"),
            _value_tooltip(metric),
            *_trust_tooltips(bool(metric.ci_low)),
        ],
    )
    layers = [bars]
    if metric.ci_low:
        layers.append(alt.Chart().mark_rule(color="#1f2933").encode(y="ci_low:Q", y2="ci_high:Q"))
    chart = alt.layer(*layers, data=_rows()).encode(
        x=alt.X("hardware:N", title="Hardware", axis=alt.Axis(labelAngle=0)),
        xOffset=offset,
    )
    return _template(chart.properties(height=CHART_HEIGHT))


def hardware_comparison(df: pd.DataFrame, metric: Metric) -> dict | None:
    """Grouped bars: one model's ``metric`` on each hardware, a bar per batch size and series.

    ``df`` columns: storage.dashboard.HARDWARE_COLUMNS (model_name, hardware, device_name,
    batch_size, series, value, ci_low, ci_high, n, noisy, ...).
    """
    if df.empty:
        return None
    split = _series_count(df) > 1
    # The frame comes sorted by hardware, series and batch size (storage.dashboard).
    rows = _described(df, bool(metric.ci_low)).assign(
        group=df["series"].fillna("") + " · bs " + df["batch_size"].map(str), group_order=range(len(df))
    )
    series = "" if split else f" ({df['series'].iloc[0]})"
    title = f"{df['model_name'].iloc[0]}: {metric.label} by hardware{series}"
    return _error_bars_where_known(_filled(_hardware_comparison_template(metric, split), rows, title), df)


@cache
def _batch_scaling_template(metric: Metric) -> dict:
    tooltip = [
        alt.Tooltip("series:N", title="Series"),
        alt.Tooltip("batch_size:Q", title="Batch size"),
        _value_tooltip(metric),
        *_trust_tooltips(bool(metric.ci_low)),
    ]
    color = alt.Color("series:N", title="Model · precision · sequence length or image size")
    # One line per series: a line never joins two precisions, sequence lengths or image sizes.
    line = alt.Chart().mark_line().encode(y=_value(metric), detail="series:N", color=color)
    layers = [line]
    if metric.ci_low:
        layers.append(alt.Chart().mark_rule().encode(y="ci_low:Q", y2="ci_high:Q", color=color))
    layers.append(_series_points(_value(metric), tooltip, color))
    chart = alt.layer(*layers, data=_rows()).encode(
        x=alt.X(
            "batch_size:Q",
            title="Batch size",
            scale=alt.Scale(type="log", base=2),
            axis=alt.Axis(format="d"),
        ),
    )
    return _template(chart.properties(height=CHART_HEIGHT))


def _series_points(y: alt.Y, tooltip: list[alt.Tooltip], color: alt.Color) -> alt.Chart:
    """A point per row in its series' ``color``; a noisy one hollow: white, ringed in that colour.
    Fill and stroke, never color: Vega-Lite drops a color beside a fill (so a noisy point had no
    ring, white on white). Their title and legend are the color's, so the legends merge in one."""
    series = {key: value for key, value in color.to_dict().items() if key in ("title", "legend")}
    return alt.Chart().mark_point(size=60, filled=True).encode(
        y=y,
        fill=alt.condition(NOISY, alt.value("white"), alt.Fill("series:N", **series)),
        stroke=alt.Stroke("series:N", **series),
        tooltip=tooltip,
    )


def batch_scaling(df: pd.DataFrame, metric: Metric) -> dict | None:
    """Lines of ``metric`` against batch size (log2 axis), one per series (model, precision,
    sequence length or image size, scenario), on one hardware.

    ``df`` columns: storage.dashboard.SCALING_COLUMNS (model_name, hardware, batch_size, series,
    value, ci_low, ci_high, n, noisy, ...).
    """
    if df.empty:
        return None
    spec = _filled(
        _batch_scaling_template(metric), _described(df, bool(metric.ci_low)),
        f"{metric.label} vs batch size on {df['hardware'].iloc[0]}",
    )
    return _error_bars_where_known(_log2_batch_axis(spec, df), df)


def _log2_batch_axis(spec: dict, df: pd.DataFrame) -> dict:
    """Ticks at the measured batch sizes only; a lone batch size gets an octave either side."""
    batch_sizes = sorted(int(size) for size in df["batch_size"].unique())
    x = spec["encoding"]["x"]
    x["axis"]["values"] = batch_sizes
    x["scale"]["domain"] = (
        [batch_sizes[0], batch_sizes[-1]]
        if len(batch_sizes) > 1
        else [batch_sizes[0] / 2, batch_sizes[0] * 2]
    )
    return spec


GENERATION_MEASURES = ("TTFT", "TPOT")  # storage.dashboard.GENERATION_MEASURES' labels, in order


@cache
def _generation_scaling_template() -> dict:
    tooltip = [
        alt.Tooltip("series:N", title="Model · precision · prompt · new tokens"),
        alt.Tooltip("measure:N", title="Measure"),
        alt.Tooltip("batch_size:Q", title="Batch size"),
        alt.Tooltip("value:Q", title="Median (ms)", format=",.4~f"),
        *_trust_tooltips(True),
    ]
    # TTFT is a whole prefill, TPOT one decoding step: often 10-100x apart, so a log axis.
    y = alt.Y("value:Q", title="Milliseconds (log scale)", scale=alt.Scale(type="log"),
              axis=alt.Axis(format=NUMBER_FORMAT))
    # The measure legend draws a short line of each dash, in ink (a line has no colour of its own).
    dash = alt.StrokeDash(
        "measure:N", title="Measure", scale=alt.Scale(domain=list(GENERATION_MEASURES), range=[[1, 0], [6, 3]]),
        legend=alt.Legend(symbolType="stroke", symbolStrokeColor="#1f2933", symbolStrokeWidth=2, symbolSize=300),
    )
    # A line per model series and measure: color and strokeDash together group the lines, so
    # no line joins two models, two generation shapes, or TTFT with TPOT.
    # Series name four settings: room for them in full (a phone's width holds 240 px).
    color = alt.Color("series:N", title="Model · precision · prompt · new tokens", legend=alt.Legend(labelLimit=240))
    line = alt.Chart().mark_line().encode(y=y, strokeDash=dash, color=color)
    errors = alt.Chart().mark_rule().encode(y="ci_low:Q", y2="ci_high:Q", color=color)
    chart = alt.layer(line, errors, _series_points(y, tooltip, color), data=_rows()).encode(
        x=alt.X("batch_size:Q", title="Batch size", scale=alt.Scale(type="log", base=2), axis=alt.Axis(format="d")),
    )
    return _template(chart.properties(height=CHART_HEIGHT))


def generation_scaling(df: pd.DataFrame) -> dict | None:
    """TTFT and TPOT against batch size (log2 axis) on one hardware: a colour per model series
    (model, precision, prompt length, new tokens), TTFT solid and TPOT dashed, each point with
    the 95% CI of its median as an error bar (of a point of several results, their mean: the
    range of their CIs) and its n in the tooltip; noisy points hollow.

    ``df`` columns: storage.dashboard.GENERATION_COLUMNS (series, measure, batch_size, value,
    ci_low, ci_high, n, noisy, ...), two rows (TTFT, TPOT) per point.
    """
    if df is None or df.empty:
        return None
    title = f"TTFT and TPOT vs batch size on {df['hardware'].iloc[0]}"
    rows = _described(df, True, digits=4)
    return _error_bars_where_known(_log2_batch_axis(_filled(_generation_scaling_template(), rows, title), df), df)


@cache
def _family_heatmap_template(metric: Metric) -> dict:
    base = alt.Chart(_rows()).encode(
        x=alt.X("hardware:N", title="Hardware", axis=alt.Axis(labelAngle=0, orient="top")),
        y=alt.Y("series:N", title="Family · precision · sequence length or image size", axis=alt.Axis(labelLimit=150)),
    )
    tooltip = [
        alt.Tooltip("model_family:N", title="Family"),
        alt.Tooltip("series:N", title="Series"),
        alt.Tooltip("hardware:N", title="Hardware"),
        _value_tooltip(metric),
        *_trust_tooltips(bool(metric.ci_low)),
    ]
    cells = base.mark_rect().encode(
        color=alt.Color(
            "value:Q",
            title=metric.label,
            scale=alt.Scale(scheme="blues", reverse=not metric.higher_is_better),
            legend=alt.Legend(format=NUMBER_FORMAT),
        ),
        tooltip=tooltip,
    )
    # The label covers the cell's centre, where a pointer goes first: it answers with the cell's tooltip.
    labels = base.mark_text(fontSize=11).encode(
        text=alt.Text("label:N"),
        color=alt.condition("datum.dark", alt.value("white"), alt.value("#1f2933")),
        tooltip=tooltip,
    )
    return _template(alt.layer(cells, labels))


def family_heatmap(df: pd.DataFrame, metric: Metric) -> dict | None:
    """A (family · precision · sequence length or image size) × hardware grid coloured by
    ``metric``; darker is better. A cell is the mean of every result of its family, series and hardware (the
    family's models and batch sizes, every run's where the filters keep them), and its label
    carries its n; its tooltip says whether it is one result or a mean, and what its interval is.

    ``df`` columns: storage.dashboard.HEATMAP_COLUMNS (model_family, hardware, series, value, n, noisy, ...).
    """
    if df.empty:
        return None
    # Labels turn white on the darker half of the scale so they stay legible.
    middle = (df["value"].min() + df["value"].max()) / 2
    rows = _described(df, bool(metric.ci_low)).assign(
        dark=df["value"] > middle if metric.higher_is_better else df["value"] < middle,
        label=[
            f"{value:,.4g} (n={n}{', noisy' if noisy else ''})"
            for value, n, noisy in zip(df["value"], df["n"], df.get("noisy", [0] * len(df)), strict=True)
        ],
    )
    title = f"{metric.label} by model family and hardware, averaged over each family's models and batch sizes"
    return _discrete_height(_filled(_family_heatmap_template(metric), rows, title), HEATMAP_ROW_PX * df["series"].nunique())


# ---- one result's samples ----------------------------------------------------------------


@cache
def _histogram_template(axis_title: str = "Latency (ms)", count_title: str = "Iterations") -> dict:
    bars = (
        alt.Chart(_rows())
        .mark_bar(color="#2563eb")
        .encode(
            x=alt.X("bin_start:Q", title=axis_title, bin="binned", scale=alt.Scale(zero=False),
                    axis=alt.Axis(format=NUMBER_FORMAT)),
            x2="bin_end:Q",
            y=alt.Y("count:Q", title=count_title),
            tooltip=[
                alt.Tooltip("bin_start:Q", title="From (ms)", format=",.4~f"),
                alt.Tooltip("bin_end:Q", title="To (ms)", format=",.4~f"),
                alt.Tooltip("count:Q", title=count_title),
            ],
        )
    )
    marks = alt.Chart(alt.NamedData(name=MARKS))
    ci = marks.transform_filter("datum.kind === 'ci'").mark_rect(color="#f59e0b", opacity=0.25).encode(
        x="start:Q", x2="end:Q", tooltip=[alt.Tooltip("label:N", title="Marked")]
    )
    median = marks.transform_filter("datum.kind === 'p50'").mark_rule(color="#b91c1c", strokeWidth=2).encode(
        x="start:Q", tooltip=[alt.Tooltip("label:N", title="Marked")]
    )
    return _template(alt.layer(ci, bars, median).properties(height=220))


def sample_histogram(
    df: pd.DataFrame, p50: float | None, ci_low: float | None, ci_high: float | None,
    *, what: str = "timed iterations", axis_title: str = "Latency (ms)", count_title: str = "Iterations",
    median: str = "median",
) -> dict | None:
    """The distribution of one result's samples: ``df`` is storage.dashboard.sample_histogram's
    bins (bin_start, bin_end, count), with the median and its 95% CI marked.

    ``what`` names the samples in the title ("timed iterations"; for a generation also "times
    to first token" or "per-token gaps"), ``median`` the marked value ("median TPOT")."""
    if df.empty or df["count"].sum() == 0:
        return None
    marks = []
    if ci_low is not None and ci_high is not None:
        marks.append({"kind": "ci", "start": ci_low, "end": ci_high,
                      "label": f"95% CI of the {median}: {ci_low:,.4g} to {ci_high:,.4g} ms"})
    if p50 is not None:
        marks.append({"kind": "p50", "start": p50, "end": p50, "label": f"{median} {p50:,.4g} ms"})
    total = int(df["count"].sum())
    return _filled(_histogram_template(axis_title, count_title), df, f"Distribution of {total:,} {what}",
                   **{MARKS: marks})


@cache
def _trace_template(bucketed: bool) -> dict:
    x = alt.X("iteration:Q", title="Iteration", axis=alt.Axis(format="d"))
    tooltip = [
        alt.Tooltip("iteration:Q", title="Iteration"),
        *([alt.Tooltip("iteration_end:Q", title="to iteration")] if bucketed else []),
        alt.Tooltip("latency_ms:Q", title="Median (ms)" if bucketed else "Latency (ms)", format=",.4~f"),
        *(
            [
                alt.Tooltip("low:Q", title="Min (ms)", format=",.4~f"),
                alt.Tooltip("high:Q", title="Max (ms)", format=",.4~f"),
            ]
            if bucketed
            else []
        ),
    ]
    base = alt.Chart(_rows()).encode(x=x)
    line = base.mark_line(color="#2563eb", point=not bucketed).encode(
        y=alt.Y("latency_ms:Q", title="Latency (ms)", axis=alt.Axis(format=NUMBER_FORMAT)), tooltip=tooltip
    )
    band = base.mark_area(color="#93c5fd", opacity=0.5).encode(y="low:Q", y2="high:Q")
    layers = [band, line] if bucketed else [line]
    return _template(alt.layer(*layers).properties(height=220))


def sample_trace(df: pd.DataFrame) -> dict | None:
    """One result's samples in iteration order (storage.dashboard.sample_trace): warm-up drift
    and throttling show as a trend. Buckets of many samples draw their min-max band."""
    if df.empty:
        return None
    bucketed = bool((df["iteration_end"] > df["iteration"]).any())
    title = "Latency by iteration" + (" (median and range per bucket of iterations)" if bucketed else "")
    return _filled(_trace_template(bucketed), df, title)


# ---- a run's report -----------------------------------------------------------------------


@cache
def _run_throughput_template() -> dict:
    # Sized for report.html, which is read on its own (not in a page's container).
    return (
        alt.Chart(_rows(), title="Throughput by batch size")
        .mark_line(point=True)
        .encode(
            x=alt.X("batch_size:O", title="Batch size"),
            y=alt.Y("throughput_items_per_second:Q", title="Items per second"),
            color=alt.Color("config:N", title="Model / hardware / precision"),
            tooltip=[
                "model_name:N", "hardware:N", "batch_size:Q", "precision:N",
                "p50_latency_ms:Q", "throughput_items_per_second:Q",
            ],
        )
        .properties(width=560, height=300)
        .to_dict()
    )


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def run_throughput(results: Sequence) -> dict | None:
    """A run's throughput against batch size, a line per model, hardware and precision (a
    generation's items/s, whole generations, on a line of its own). ``results`` are the run's
    ResultRows; the chart carries only the columns it draws."""
    if not results:
        return None
    rows = [
        {
            "config": f"{row.model_name} / {row.hardware} / {row.precision}"
            + (" / generate" if row.scenario == "generate" else ""),
            "model_name": row.model_name,
            "hardware": row.hardware,
            "precision": row.precision,
            "batch_size": row.batch_size,
            "p50_latency_ms": _finite(row.p50_latency_ms),
            "throughput_items_per_second": _finite(row.throughput_items_per_second),
        }
        for row in results
    ]
    spec = copy.deepcopy(_run_throughput_template())
    spec["datasets"] = {DATASET: rows}
    return spec


# ---- SQL results ------------------------------------------------------------------------------


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Number | Decimal) and not isinstance(value, bool)


def _column_kind(values: list) -> str | None:
    present = [value for value in values if value is not None]
    if not present:
        return None
    if all(isinstance(value, str) for value in present):
        return "category"
    if all(isinstance(value, int) and not isinstance(value, bool) for value in present):
        return "integer"
    if all(_is_number(value) for value in present):
        return "number"
    if all(isinstance(value, datetime | date) for value in present):
        return "time"
    return None


# Columns that identify or describe a config rather than measure it: never a bar's length.
_IDENTIFIER = re.compile(r"(^|_)(id|key|fingerprint|version)$", re.IGNORECASE)
_DIMENSIONS = frozenset(
    {"batch_size", "sequence_length", "image_size", "threads", "rank", "row_number", "new_tokens",
     "compute_units", "n_samples", "total_configs", "completed_configs", "total_models", "completed_models"}
)


def _measure_score(name: str, kind: str | None) -> int | None:
    """How good a bar length ``name`` makes (higher is better); None for never."""
    if kind not in ("number", "integer") or _IDENTIFIER.search(name):
        return None
    if name.lower() in _DIMENSIONS:
        return 0
    return 2 if kind == "number" else 1


def _category_score(name: str, kind: str | None) -> int | None:
    """How good an axis of bars ``name`` makes: a text column, else an integer setting such as
    batch_size; an id only when nothing else is there."""
    if kind == "category":
        return 1 if _IDENTIFIER.search(name) else 3
    if kind == "integer" and name.lower() in _DIMENSIONS:
        return 2
    return None


@lru_cache(maxsize=64)
def _auto_chart_template(category: str, number: str, group: str | None, aggregated: bool) -> dict:
    tooltip = [alt.Tooltip("category:N", title=category)]
    encoding = {}
    if group is not None:
        encoding = {"color": alt.Color("group:N", title=group), "yOffset": alt.YOffset("group:N")}
        tooltip.append(alt.Tooltip("group:N", title=group))
    value_title = f"mean of {number}" if aggregated else number
    tooltip.append(alt.Tooltip("value:Q", title=value_title, format=NUMBER_FORMAT))
    if aggregated:
        tooltip.append(alt.Tooltip("n:Q", title="Rows (n)"))
    return _template(
        alt.Chart(_rows())
        .mark_bar()
        .encode(
            y=alt.Y("category:N", title=category, sort="-x"),
            x=alt.X("value:Q", title=value_title, axis=alt.Axis(format=NUMBER_FORMAT)),
            tooltip=tooltip,
            **encoding,
        )
    )


def _best(scores: list[int | None], exclude: set[int] = frozenset()) -> int | None:
    candidates = [(score, -index) for index, score in enumerate(scores) if score is not None and index not in exclude]
    return -max(candidates)[1] if candidates else None


def auto_chart(columns: Sequence[str], rows: Sequence[Sequence]) -> dict | None:
    """A bar chart of a SQL result: a measure column's values per a text (or categorical) column.

    The measure is the first non-integer number column that is not an id (an integer one if
    there is none, a setting such as batch_size last); the axis is the first text column that is
    not an id (an integer setting such as batch_size if there is none). A second text column, if
    any, colours the bars (e.g. family × hardware). Where an axis value comes more than once,
    the bar is the mean of its rows, and says so. The spec's ``description`` says which columns
    were picked. ``None`` when the result has no such pair, or too many bars to draw.
    """
    if not rows:
        return None
    kinds = [_column_kind([row[index] for row in rows]) for index in range(len(columns))]
    category = _best([_category_score(name, kind) for name, kind in zip(columns, kinds, strict=True)])
    if category is None:
        return None
    number = _best([_measure_score(name, kind) for name, kind in zip(columns, kinds, strict=True)], {category})
    if number is None:
        return None
    group = next(
        (index for index, kind in enumerate(kinds) if kind == "category" and index not in (category, number)
         and not _IDENTIFIER.search(columns[index])),
        None,
    )
    cells: dict[tuple, list[float]] = {}
    for row in rows:
        key = (row[category], row[group] if group is not None else None)
        cells.setdefault(key, [])
        if row[number] is not None:
            cells[key].append(float(row[number]))
    if len({key[0] for key in cells}) > AUTO_CHART_MAX_BARS:
        return None
    aggregated = any(len(values) > 1 for values in cells.values())
    records = [
        {
            "category": key[0] if isinstance(key[0], str) else str(key[0]),
            "value": (sum(values) / len(values)) if values else None,
            **({"group": key[1]} if group is not None else {}),
            **({"n": len(values)} if aggregated else {}),
        }
        for key, values in cells.items()
    ]
    template = _auto_chart_template(
        columns[category], columns[number], None if group is None else columns[group], aggregated
    )
    colour = f", coloured by {columns[group]}" if group is not None else ""
    averaged = f" ({len(rows)} rows averaged into {len(records)} bars; n in the tooltip)" if aggregated else ""
    measure = f"the mean {columns[number]}" if aggregated else columns[number]
    title = f"Chart: {measure} by {columns[category]}{colour}{averaged}."
    categories = len({key[0] for key in cells})
    height = (
        AUTO_BAR_PX * categories if group is None
        else AUTO_GROUPED_BAR_PX * categories * len({key[1] for key in cells})
    )
    return _discrete_height(_filled(template, records, title), height)


COMPARE_SIDES = ("baseline", "contender")


# The body of each side's distribution: percentiles 5 to 95. The extremes (a preempted sample
# can be ten times the median) would squash the rest; the tooltips and the table give them.
DISTRIBUTION_PERCENTILES = (5, 95)


@cache
def _distributions_template() -> dict:
    y = alt.Y("label:N", title=None, sort=None)  # data order: the baseline first
    color = alt.Color("side:N", legend=None, scale=alt.Scale(domain=list(COMPARE_SIDES), range=["#64748b", "#2563eb"]))
    x_title = "Latency (ms, log scale)"
    # A log axis: a 10% change is the same width at any latency, and a long tail does not squash the box.
    # (A log scale never holds zero: naming zero=False for it only made Vega-Lite warn.)
    x = alt.X("latency_ms:Q", title=x_title, scale=alt.Scale(type="log", nice=False, padding=8),
              axis=alt.Axis(format=NUMBER_FORMAT, tickCount=5))
    summary = alt.Chart(_rows()).transform_filter("datum.percentile == 50")
    whisker = summary.mark_rule(strokeWidth=1.5).encode(y=y, x=alt.X("p5:Q"), x2="p95:Q", color=color)
    box = summary.mark_bar(size=20, opacity=0.3).encode(y=y, x=alt.X("p25:Q"), x2="p75:Q", color=color)
    median = summary.mark_tick(size=24, thickness=3, color="#1f2933").encode(y=y, x=alt.X("p50:Q"))
    strip = alt.Chart(_rows()).mark_tick(thickness=1.5, size=14).encode(
        y=y, x=x, color=color,
        tooltip=[
            alt.Tooltip("label:N", title="Side"),
            alt.Tooltip("percentile:Q", title="Percentile"),
            alt.Tooltip("latency_ms:Q", title="Latency (ms)", format=",.4~f"),
            alt.Tooltip("min:Q", title="Fastest (ms)", format=",.4~f"),
            alt.Tooltip("max:Q", title="Slowest (ms)", format=",.4~f"),
        ],
    )
    return _template(alt.layer(strip, whisker, box, median).properties(height=110))


def sample_distributions(
    title: str, baseline_quantiles: Sequence[float], contender_quantiles: Sequence[float],
    labels: tuple[str, str] = COMPARE_SIDES,
) -> dict | None:
    """Both sides of a compared config, each as a box (quartiles, median, whiskers at the 5th and
    95th percentiles) over a strip of ticks at every 5th percentile from the 5th to the 95th.
    ``*_quantiles`` are the 0th, 5th, ..., 100th percentiles of each side's raw samples
    (engine.compare's Side.quantiles_ms), so the chart never carries raw samples."""
    rows = []
    low, high = DISTRIBUTION_PERCENTILES
    for side, label, quantiles in zip(COMPARE_SIDES, labels, (baseline_quantiles, contender_quantiles), strict=True):
        steps = len(quantiles) - 1
        if steps < 4 or 100 % steps:
            continue
        at = {round(100 * i / steps): float(value) for i, value in enumerate(quantiles)}
        shape = {f"p{q}": at[q] for q in (5, 25, 50, 75, 95) if q in at} | {"min": at[0], "max": at[100]}
        rows += [
            {"side": side, "label": label, "percentile": percentile, "latency_ms": value, **shape}
            for percentile, value in at.items()
            if low <= percentile <= high
        ]
    if not rows:
        return None
    return _filled(_distributions_template(), rows, title)
