"""Model and hardware descriptions as the registry and detection give them, for test rows."""

from datetime import datetime

from engine.hardware import HardwareInfo
from engine.models.spec import ModelInfo
from engine.runs import RunRecord, RunRequest
from webapp.wiring.adapters import StorageResultStore


def hardware_description(name: str, kind: str, device: str, **overrides) -> HardwareInfo:
    return HardwareInfo(
        **{"name": name, "type": kind, "device": device, "memory_gb": 16.0, "torch_device": name} | overrides
    )


CPU = hardware_description("cpu", "cpu", "Test CPU")


def model_description(name: str, family: str, **overrides) -> ModelInfo:
    return ModelInfo(
        **{
            "name": name,
            "family": family,
            "type": "encoder",
            "modality": "text",
            "parameters_million": 1.0,
            "source": "builtin",
            "weights": "random",
            "tier": "low",
        }
        | overrides
    )


def stored_run(run_id: str, status: str = "completed", **fields) -> RunRecord:
    """A test_runs row as the scheduler writes one; ``fields`` override the status and request."""
    request = fields.pop("request", RunRequest())
    done, total = fields.get("completed_configs", 0), fields.get("total_configs", 0)
    defaults = {
        "progress": done / total if total else 1.0,
        "current_step": None, "start_time": None, "elapsed_time": 0.0, "estimated_remaining_time": None,
        "completed_models": 0, "total_models": 0, "error": None, "completed_configs": 0, "total_configs": 0,
        "priority": request.priority, "created_at": datetime.now(), "completion_time": None,
    }
    return RunRecord(run_id=run_id, status=status, request=request, **(defaults | fields))


def result_store(db, *models: ModelInfo, hardware: tuple[HardwareInfo, ...] = (CPU,)) -> StorageResultStore:
    """The server's own ResultStore over ``db``, knowing just ``models`` and ``hardware``:
    tests store rows the way the scheduler does."""
    by_name = {model.name: model for model in models}
    devices = {device.name: device for device in hardware}
    return StorageResultStore(db, by_name.__getitem__, devices.__getitem__)
