"""Custom dashboard tabs: panels (a guarded SQL query plus a chart) grouped into tabs, from the
SQL page's "Save as panel", the operator's panels folder, or a ``benchboard.panels`` entry point.

A plugin's entry point names a ``Tab`` (or a function returning one or a list of them)::

    from webapp.panels import Panel, Tab

    def latency_chart(rows):            # rows: a pandas DataFrame of the query's rows
        return alt.Chart(rows).mark_bar().encode(x="model_name:N", y="p50:Q")

    def tabs():
        return Tab(name="my-tab", title="My tab", panels=[
            Panel(title="Median latency", sql="SELECT model_name, median(p50_latency_ms) AS p50 "
                                              "FROM results_view GROUP BY model_name", render=latency_chart),
        ])
"""

from webapp.panels.model import CHART_KINDS, ChartKind, Panel, Tab, TabProblem

__all__ = ["CHART_KINDS", "ChartKind", "Panel", "Tab", "TabProblem"]
