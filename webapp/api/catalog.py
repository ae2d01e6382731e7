"""What can be benchmarked here: models and hardware."""

from __future__ import annotations

from litestar import Controller, get

from webapp.services import Services


class CatalogController(Controller):
    path = "/api/benchmark"
    tags = ["catalog"]

    @get("/models", operation_id="listModels", sync_to_thread=True)
    def models(self, services: Services) -> list[dict]:
        return [spec.describe() for spec in services.registry.list()]

    @get("/hardware", operation_id="listHardware")
    async def hardware(self, services: Services) -> list[dict]:
        return [hw.describe() for hw in services.hardware]
