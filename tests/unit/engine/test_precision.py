import pytest
import torch

from engine.config import PRECISIONS
from engine.precision import incompatibility_reason, supported_precisions, torch_dtype


def test_cpu_runs_every_precision_on_this_torch():
    assert supported_precisions("cpu") == ["fp32", "fp16", "bf16", "int8"]


# torch warns that quantized tensors are deprecated; they still are what int8 dynamic quantization uses.
@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")
@pytest.mark.parametrize("precision", supported_precisions("cpu"))
def test_every_precision_claimed_for_cpu_really_runs_a_linear_layer(precision):
    layer = torch.nn.Sequential(torch.nn.Linear(16, 8)).eval()
    if precision == "int8":
        layer = torch.ao.quantization.quantize_dynamic(layer, {torch.nn.Linear}, dtype=torch.qint8)
    layer = layer.to(torch_dtype(precision))
    with torch.inference_mode():
        out = layer(torch.ones(2, 16, dtype=torch_dtype(precision)))
    assert out.shape == (2, 8)
    assert torch.isfinite(out.float()).all()


@pytest.mark.parametrize("device_type", ["cuda", "rocm", "mps", "xpu"])
def test_int8_is_refused_off_cpu_because_dynamic_quantization_is_cpu_only(device_type):
    assert incompatibility_reason(device_type, "int8") == "int8 dynamic quantization runs on cpu only"
    assert "int8" not in supported_precisions(device_type)


def test_bf16_on_cuda_needs_compute_capability_8():
    reason = incompatibility_reason("cuda", "bf16", {"compute_capability": "7.5"})
    assert reason is not None and "8.0" in reason and "7.5" in reason
    assert incompatibility_reason("cuda", "bf16", {"compute_capability": "8.0"}) is None
    assert supported_precisions("cuda", {"compute_capability": "9.0"}) == ["fp32", "fp16", "bf16"]
    assert supported_precisions("cuda", {"compute_capability": "7.0"}) == ["fp32", "fp16"]


def test_mps_runs_fp32_and_fp16_and_xpu_adds_bf16():
    assert supported_precisions("mps") == ["fp32", "fp16"]
    assert "bf16" in incompatibility_reason("mps", "bf16")
    assert supported_precisions("xpu") == ["fp32", "fp16", "bf16"]


def test_unknown_precision_or_device_type_gets_a_reason_naming_the_choices():
    reason = incompatibility_reason("cpu", "fp8")
    assert reason == "unknown precision 'fp8'; choose one of fp32, fp16, bf16, int8"
    assert "'tpu'" in incompatibility_reason("tpu", "fp32")


def test_torch_dtype_keeps_fp32_activations_for_int8():
    dtypes = [torch_dtype(precision) for precision in PRECISIONS]
    assert dtypes == [torch.float32, torch.float16, torch.bfloat16, torch.float32]
    with pytest.raises(ValueError, match="unknown precision 'fp64'; choose one of fp32"):
        torch_dtype("fp64")
