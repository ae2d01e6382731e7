"""Altair chart specs (Vega-Lite dicts) built from small, already aggregated DataFrames.

Each builder returns ``None`` when there is nothing to draw, so a page can show its empty
state instead of a blank chart. The pages embed the dicts as JSON; the vendored vega-embed
draws them in the browser.

Altair validates a chart against the Vega-Lite schema as it builds it, which costs
milliseconds per chart, more than the DuckDB aggregate behind it. So each chart's
shape is built (and validated) once per metric, reading a named dataset, and every
request only fills in its rows and title.
"""

from __future__ import annotations

import copy
import json
import numbers
from collections.abc import Sequence
from decimal import Decimal
from functools import cache, lru_cache

import altair as alt
import pandas as pd

from storage.dashboard import Metric

NUMBER_FORMAT = ",.2~f"
CHART_HEIGHT = 280
# Beyond this many categories a bar chart of SQL results stops being readable.
AUTO_CHART_MAX_BARS = 50
DATASET = "rows"  # the named dataset every template reads


def _template(chart: alt.Chart | alt.LayerChart) -> dict:
    # fit-x: as wide as the page allows; heights stay as each chart sets them.
    styled = (
        chart.properties(width="container", autosize=alt.AutoSizeParams(type="fit-x", contains="padding"))
        .configure_view(strokeWidth=0)
        .configure(font="system-ui, -apple-system, Segoe UI, Roboto, sans-serif")
        .configure_title(anchor="start", fontSize=14, fontWeight=600)
        .configure_axis(labelFontSize=11, titleFontSize=12, labelLimit=180)
        .configure_legend(orient="bottom", direction="horizontal", titleOrient="left")
    )
    return styled.to_dict()


def _filled(template: dict, rows: pd.DataFrame | list[dict], title: str) -> dict:
    spec = copy.deepcopy(template)
    # to_json turns NaN into null, as JSON needs; numpy scalars into plain numbers.
    records = json.loads(rows.to_json(orient="records")) if isinstance(rows, pd.DataFrame) else rows
    spec["datasets"] = {DATASET: records}
    spec["title"] = title
    return spec


def _rows() -> alt.NamedData:
    return alt.NamedData(name=DATASET)


def _value(metric: Metric) -> alt.Y:
    return alt.Y("value:Q", title=metric.label, axis=alt.Axis(format=NUMBER_FORMAT))


def _value_tooltip(metric: Metric) -> alt.Tooltip:
    return alt.Tooltip("value:Q", title=metric.label, format=NUMBER_FORMAT)


@cache
def _hardware_comparison_template(metric: Metric) -> dict:
    return _template(
        alt.Chart(_rows())
        .mark_bar()
        .encode(
            x=alt.X("hardware:N", title="Hardware", axis=alt.Axis(labelAngle=0)),
            xOffset=alt.XOffset("batch_size:O"),
            y=_value(metric),
            color=alt.Color("batch_size:O", title="Batch size", scale=alt.Scale(scheme="blues")),
            tooltip=[
                alt.Tooltip("hardware:N", title="Hardware"),
                alt.Tooltip("device_name:N", title="Device"),
                alt.Tooltip("batch_size:O", title="Batch size"),
                _value_tooltip(metric),
                alt.Tooltip("n:Q", title="Results"),
            ],
        )
        .properties(height=CHART_HEIGHT)
    )


def hardware_comparison(df: pd.DataFrame, metric: Metric) -> dict | None:
    """Grouped bars: one model's ``metric`` on each hardware, a bar per batch size.

    ``df`` columns: model_name, hardware, device_name, batch_size, value, n.
    """
    if df.empty:
        return None
    title = f"{df['model_name'].iloc[0]}: {metric.label} by hardware"
    return _filled(_hardware_comparison_template(metric), df, title)


@cache
def _batch_scaling_template(metric: Metric) -> dict:
    return _template(
        alt.Chart(_rows())
        .mark_line(point=True)
        .encode(
            x=alt.X(
                "batch_size:Q",
                title="Batch size",
                scale=alt.Scale(type="log", base=2),
                axis=alt.Axis(format="d"),
            ),
            y=_value(metric),
            color=alt.Color("model_name:N", title="Model"),
            tooltip=[
                alt.Tooltip("model_name:N", title="Model"),
                alt.Tooltip("batch_size:Q", title="Batch size"),
                _value_tooltip(metric),
            ],
        )
        .properties(height=CHART_HEIGHT)
    )


def batch_scaling(df: pd.DataFrame, metric: Metric) -> dict | None:
    """Lines of ``metric`` against batch size (log2 axis), one per model, on one hardware.

    ``df`` columns: model_name, hardware, batch_size, value.
    """
    if df.empty:
        return None
    spec = _filled(
        _batch_scaling_template(metric), df, f"{metric.label} vs batch size on {df['hardware'].iloc[0]}"
    )
    batch_sizes = sorted(int(size) for size in df["batch_size"].unique())
    # Ticks at the measured batch sizes only; a lone batch size gets an octave either side.
    x = spec["encoding"]["x"]
    x["axis"]["values"] = batch_sizes
    x["scale"]["domain"] = (
        [batch_sizes[0], batch_sizes[-1]]
        if len(batch_sizes) > 1
        else [batch_sizes[0] / 2, batch_sizes[0] * 2]
    )
    return spec


@cache
def _family_heatmap_template(metric: Metric) -> dict:
    base = alt.Chart(_rows()).encode(
        x=alt.X("hardware:N", title="Hardware", axis=alt.Axis(labelAngle=0, orient="top")),
        y=alt.Y("model_family:N", title="Model family"),
    )
    cells = base.mark_rect().encode(
        color=alt.Color(
            "value:Q",
            title=metric.label,
            scale=alt.Scale(scheme="blues", reverse=not metric.higher_is_better),
            legend=alt.Legend(format=NUMBER_FORMAT),
        ),
        tooltip=[
            alt.Tooltip("model_family:N", title="Family"),
            alt.Tooltip("hardware:N", title="Hardware"),
            _value_tooltip(metric),
            alt.Tooltip("n:Q", title="Results"),
        ],
    )
    labels = base.mark_text(fontSize=11).encode(
        text=alt.Text("value:Q", format=NUMBER_FORMAT),
        color=alt.condition("datum.dark", alt.value("white"), alt.value("#1f2933")),
    )
    return _template(alt.layer(cells, labels).properties(height={"step": 32}))


def family_heatmap(df: pd.DataFrame, metric: Metric) -> dict | None:
    """A model family × hardware grid coloured by ``metric``; darker is better.

    ``df`` columns: model_family, hardware, value, n.
    """
    if df.empty:
        return None
    # Labels turn white on the darker half of the scale so they stay legible.
    middle = (df["value"].min() + df["value"].max()) / 2
    rows = df.assign(dark=df["value"] > middle if metric.higher_is_better else df["value"] < middle)
    return _filled(_family_heatmap_template(metric), rows, f"{metric.label} by model family and hardware")


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Number | Decimal) and not isinstance(value, bool)


def _column_kind(values: list) -> str | None:
    present = [value for value in values if value is not None]
    if not present:
        return None
    if all(isinstance(value, str) for value in present):
        return "category"
    if all(_is_number(value) for value in present):
        return "number"
    return None


@lru_cache(maxsize=64)
def _auto_chart_template(category: str, number: str, group: str | None) -> dict:
    tooltip = [alt.Tooltip("category:N", title=category)]
    encoding, height = {}, {"step": 22}
    if group is not None:
        encoding = {"color": alt.Color("group:N", title=group), "yOffset": alt.YOffset("group:N")}
        tooltip.append(alt.Tooltip("group:N", title=group))
        height = {"step": 14, "for": "offset"}
    tooltip.append(alt.Tooltip("value:Q", title=number, format=NUMBER_FORMAT))
    return _template(
        alt.Chart(_rows())
        .mark_bar()
        .encode(
            y=alt.Y("category:N", title=category, sort="-x"),
            x=alt.X("value:Q", title=number, axis=alt.Axis(format=NUMBER_FORMAT)),
            tooltip=tooltip,
            **encoding,
        )
        .properties(height=height)
    )


def auto_chart(columns: Sequence[str], rows: Sequence[Sequence]) -> dict | None:
    """A bar chart of a SQL result: the first number column per the first text column.

    A second text column, if any, colours the bars (e.g. family × hardware). ``None`` when the
    result has no text/number pair, or too many rows to draw as bars.
    """
    if not rows or len(rows) > AUTO_CHART_MAX_BARS:
        return None
    kinds = [_column_kind([row[index] for row in rows]) for index in range(len(columns))]
    categories = [index for index, kind in enumerate(kinds) if kind == "category"]
    if not categories or "number" not in kinds:
        return None
    category, number = categories[0], kinds.index("number")
    group = categories[1] if len(categories) > 1 else None
    records = [
        {
            "category": row[category],
            "value": None if row[number] is None else float(row[number]),
            **({"group": row[group]} if group is not None else {}),
        }
        for row in rows
    ]
    template = _auto_chart_template(
        columns[category], columns[number], None if group is None else columns[group]
    )
    return _filled(template, records, f"{columns[number]} by {columns[category]}")


COMPARE_SIDES = ("baseline", "contender")


@cache
def _distributions_template() -> dict:
    base = alt.Chart(_rows()).encode(
        y=alt.Y("label:N", title=None, sort=None),  # data order: the baseline first
        x=alt.X("latency_ms:Q", title="Latency (ms)", scale=alt.Scale(zero=False),
                axis=alt.Axis(format=NUMBER_FORMAT)),
        color=alt.Color("side:N", legend=None,
                        scale=alt.Scale(domain=list(COMPARE_SIDES), range=["#64748b", "#2563eb"])),
    )
    box = base.mark_boxplot(extent="min-max", size=22, opacity=0.3, median={"color": "#1f2933"})
    strip = base.mark_tick(thickness=1.5, size=16).encode(
        tooltip=[
            alt.Tooltip("label:N", title="Side"),
            alt.Tooltip("percentile:Q", title="Percentile"),
            alt.Tooltip("latency_ms:Q", title="Latency (ms)", format=",.4~f"),
        ],
    )
    return _template(alt.layer(box, strip).properties(height=110))


def sample_distributions(
    title: str, baseline_quantiles: Sequence[float], contender_quantiles: Sequence[float],
    labels: tuple[str, str] = COMPARE_SIDES,
) -> dict | None:
    """Both sides of a compared config: a box (min, quartiles, median, max) and a strip of
    ticks at every 5th percentile of each side's raw samples. The quantiles come already
    computed (engine.compare's Side.quantiles_ms), so the chart never carries raw samples."""
    rows = []
    for side, label, quantiles in zip(COMPARE_SIDES, labels, (baseline_quantiles, contender_quantiles), strict=True):
        steps = len(quantiles) - 1
        rows += [
            {"side": side, "label": label, "percentile": round(100 * i / steps, 1) if steps else 50.0,
             "latency_ms": float(value)}
            for i, value in enumerate(quantiles)
        ]
    if not rows:
        return None
    return _filled(_distributions_template(), rows, title)
