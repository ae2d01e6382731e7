"""HTML pages of the dashboard. ``ROUTES`` is what create_app mounts."""

from webapp.pages.compare import ComparePages
from webapp.pages.dashboard import DashboardPages
from webapp.pages.favicon import favicon
from webapp.pages.login import LoginPage
from webapp.pages.panels import PanelPages
from webapp.pages.reports import ReportPages
from webapp.pages.results import ResultPages, ResultSamplesController
from webapp.pages.runs import RunPages
from webapp.pages.sql import SqlPages

ROUTES: list = [DashboardPages, ComparePages, RunPages, ReportPages, SqlPages, LoginPage, ResultPages, ResultSamplesController,
                PanelPages, favicon]
