"""What can be benchmarked here: models and hardware."""

from __future__ import annotations

from litestar import Controller, get

from engine.hardware import HardwareInfo
from engine.models.spec import ModelInfo
from webapp.errors import ERROR_RESPONSES
from webapp.wiring.services import Services


class CatalogController(Controller):
    path = "/api/benchmark"
    tags = ["catalog"]

    @get("/models", operation_id="listModels", responses=ERROR_RESPONSES, sync_to_thread=True)
    def models(self, services: Services) -> list[ModelInfo]:
        return [spec.describe() for spec in services.registry.list()]

    # In a thread: the first question about devices waits for engine.hardware's probe process.
    @get("/hardware", operation_id="listHardware", responses=ERROR_RESPONSES, sync_to_thread=True)
    def hardware(self, services: Services) -> list[HardwareInfo]:
        return services.hardware
