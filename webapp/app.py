"""``create_app(settings)``: the one place the Litestar app is assembled."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from webapp.wiring.settings import Settings

if TYPE_CHECKING:
    from litestar import Litestar

HERE = Path(__file__).parent
log = logging.getLogger(__name__)


def _prestart_cpu_worker(settings: Settings) -> dict:
    """The CPU's worker, started before the app's parts are imported (torch, transformers,
    DuckDB, Litestar: seconds), so that its own imports overlap them and a run posted the
    moment the server answers does not wait for them (issue 16). Every machine has a CPU;
    the other devices' workers start once the lifespan has detected them."""
    if not settings.prestart_workers:
        return {}
    from engine.worker_client import WorkerProcess

    worker = WorkerProcess("cpu", models_dir=settings.models_dir, custom_benchmarks_dir=settings.custom_benchmarks_dir)
    threading.Thread(target=worker.ping, name="prestart-cpu", daemon=True).start()
    return {"cpu": worker}


def _import_model_libraries() -> None:
    import torch  # noqa: F401
    import transformers  # noqa: F401
    from transformers.models.auto import modeling_auto  # noqa: F401


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    early_workers = _prestart_cpu_worker(settings)
    # Likewise the probe process that detects the devices and reads their environments, so that
    # this process never imports torch (issue 16) and the first question about devices need not
    # wait for the probe's whole torch import.
    from engine.hardware import start_facts_probe

    start_facts_probe()
    try:
        return _assemble(settings, early_workers)
    except BaseException:
        for worker in early_workers.values():
            worker.close()
        raise


def _assemble(settings: Settings, early_workers: dict) -> Litestar:
    from litestar import Litestar
    from litestar.channels import ChannelsPlugin
    from litestar.channels.backends.memory import MemoryChannelsBackend
    from litestar.config.allowed_hosts import AllowedHostsConfig
    from litestar.config.cors import CORSConfig
    from litestar.config.csrf import CSRFConfig
    from litestar.di import Provide
    from litestar.middleware import DefineMiddleware
    from litestar.openapi import OpenAPIConfig
    from litestar.plugins.htmx import HTMXPlugin
    from litestar.plugins.jinja import JinjaTemplateEngine
    from litestar.static_files import create_static_files_router
    from litestar.template.config import TemplateConfig

    from webapp.api.catalog import CatalogController
    from webapp.api.compare import CompareController
    from webapp.api.data import DataController
    from webapp.api.dependencies import provide_services
    from webapp.api.reports import ReportController
    from webapp.api.runs import RunController
    from webapp.api.security import (
        HostAllowlist,
        checked_requests,
        null_origin_only_with_token,
        require_token_on_api,
    )
    from webapp.errors import EXCEPTION_HANDLERS
    from webapp.live import ChannelsPublisher, run_updates
    from webapp.pages import ROUTES as PAGE_ROUTES
    from webapp.pages.panels import register_template_globals
    from webapp.wiring.logging_setup import configure_logging
    from webapp.wiring.services import Services

    configure_logging(settings.log_dir, max_bytes=settings.log_max_bytes, backups=settings.log_backups)
    from storage.sql_execution import SQL_POOL

    SQL_POOL.resize(settings.sql_pool_size)
    channels = ChannelsPlugin(backend=MemoryChannelsBackend(), channels=["runs"], arbitrary_channels_allowed=True)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # Opening DuckDB and detecting hardware block; keep them off the event loop.
        try:
            services = await anyio.to_thread.run_sync(functools.partial(Services, settings, workers=early_workers))
        except BaseException:
            for worker in early_workers.values():
                worker.close()
            raise
        if services.registry.lists_more_than_builtins():
            # Checkpoints or user code, whose listing imports transformers and torch: imported
            # now, before the freeze below, as every server did before issue 16 (a server of
            # the built-ins alone imports neither).
            await anyio.to_thread.run_sync(_import_model_libraries)
        # torch and transformers, where imported, leave ~350,000 long-lived objects; unfrozen,
        # each full collection stalls every request for ~150 ms.
        gc.collect()
        gc.freeze()
        services.events.listeners.append(ChannelsPublisher(channels, asyncio.get_running_loop()))
        app.state.services = services
        if settings.prestart_workers:
            # Off the event loop: the devices are detected here, by engine.hardware's probe process.
            await anyio.to_thread.run_sync(lambda: services.scheduler.prestart([hw.name for hw in services.hardware]))
        log.info("benchboard serving %s (results in %s)", settings.db_path, settings.results_dir)
        if settings.host in ("0.0.0.0", "::") and not settings.allowed_hosts:
            log.warning("listening on every interface, but only the Host names %s are answered; add "
                        "--allowed-host NAME for each name or address clients use", ", ".join(settings.host_allowlist()))
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(services.close)
            from engine.hardware import discard_facts_probe  # create_app started it

            await anyio.to_thread.run_sync(discard_facts_probe)

    async def resume_runs(app: Litestar) -> None:
        # An on_startup hook, not part of the lifespan above: hooks run once every
        # lifespan manager, ChannelsPlugin's included, has started, so the resumed
        # runs' first events reach live listeners.
        if settings.resume:
            await anyio.to_thread.run_sync(app.state.services.resume_interrupted_runs)

    cors = CORSConfig(
        allow_origins=settings.cors_origins or ["http://localhost", "http://127.0.0.1"],
        allow_origin_regex=settings.cors_origin_regex(),
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "HX-Request", "HX-Target", "HX-Current-URL", "HX-Trigger"],
    )
    return Litestar(
        route_handlers=[
            RunController,
            CatalogController,
            ReportController,
            DataController,
            CompareController,
            run_updates,
            *PAGE_ROUTES,
            create_static_files_router(path="/static", directories=[HERE / "static"], name="static"),
        ],
        dependencies={"services": Provide(provide_services, sync_to_thread=False)},
        lifespan=[lifespan],
        on_startup=[resume_runs],
        plugins=[channels, HTMXPlugin()],
        template_config=TemplateConfig(directory=HERE / "templates", engine=JinjaTemplateEngine,
                                       engine_callback=register_template_globals),
        cors_config=cors,
        csrf_config=CSRFConfig(
            secret=settings.csrf_secret(), cookie_name="csrftoken", header_name="x-csrftoken",
            exclude=["/api/", "/schema"],
        ),
        openapi_config=OpenAPIConfig(title="benchboard", version="0.1.0", path="/schema"),
        exception_handlers=EXCEPTION_HANDLERS,
        # Any other Host (a DNS-rebinding page's name) gets 400; webapp.api.security.
        middleware=[DefineMiddleware(HostAllowlist, config=AllowedHostsConfig(allowed_hosts=settings.host_allowlist()))],
        guards=[require_token_on_api],
        before_request=checked_requests,  # known query parameters, JSON bodies
        before_send=[null_origin_only_with_token(settings.token)],
        # webapp.wiring.logging_setup configures logging; Litestar's config would replace its handlers.
        logging_config=None,
    )
