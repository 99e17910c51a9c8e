"""Device and dtype choice, with CUDA/MPS availability patched (this machine has neither)."""

import pytest
import torch

from core import cpu_capabilities, devices
from core.errors import DeviceUnavailable, InvalidParameter

ZEN4 = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni\n"
AVX2_ONLY = "processor\t: 0\nflags\t\t: fpu sse avx2 fma\n"
SAPPHIRE = "flags\t\t: avx512f amx_bf16 amx_tile\n"
GRAVITON = "Features\t: fp asimd bf16 i8mm\n"


@pytest.fixture
def hardware(monkeypatch):
    def set_hardware(cuda=False, mps=False, bf16_gpu=True, cpuinfo=AVX2_ONLY):
        monkeypatch.setattr(devices, "cuda_available", lambda: cuda)
        monkeypatch.setattr(devices, "mps_available", lambda: mps)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_gpu)
        monkeypatch.setattr(
            cpu_capabilities, "_injected", cpu_capabilities.from_cpuinfo(cpuinfo, "injected")
        )

    return set_hardware


@pytest.mark.parametrize(
    "cuda, mps, expected",
    [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu"), (True, False, "cuda")],
)
def test_auto_prefers_cuda_then_mps_then_cpu(hardware, cuda, mps, expected):
    hardware(cuda=cuda, mps=mps)
    assert devices.select_device("auto") == expected


def test_explicit_device_that_is_missing_is_a_clear_error(hardware):
    hardware(cuda=False, mps=False)
    with pytest.raises(DeviceUnavailable, match="CUDA is not available"):
        devices.select_device("cuda")
    with pytest.raises(DeviceUnavailable, match="MPS is not available"):
        devices.select_device("mps")
    with pytest.raises(InvalidParameter, match="device must be one of"):
        devices.select_device("tpu")


def test_explicit_cuda_index_is_kept_when_available(hardware):
    hardware(cuda=True)
    assert devices.select_device("cuda:1") == "cuda:1"


@pytest.mark.parametrize(
    "device, kwargs, expected",
    [
        ("cuda", {"bf16_gpu": True}, torch.bfloat16),
        ("cuda", {"bf16_gpu": False}, torch.float16),
        ("mps", {}, torch.float16),
        # fp32 masters with native bf16 too: decode from a bf16 copy measured faster behind them
        ("cpu", {"cpuinfo": ZEN4}, torch.float32),
        ("cpu", {"cpuinfo": SAPPHIRE}, torch.float32),
        ("cpu", {"cpuinfo": GRAVITON}, torch.float32),
        ("cpu", {"cpuinfo": AVX2_ONLY}, torch.float32),
    ],
)
def test_default_dtype_follows_the_device(hardware, device, kwargs, expected):
    hardware(**kwargs)
    assert devices.select_dtype(device, None) == expected
    assert devices.select_dtype(device, "auto") == expected


@pytest.mark.parametrize(
    "given, expected",
    [
        ("bfloat16", torch.bfloat16),
        ("float16", torch.float16),
        ("float32", torch.float32),
        (torch.float16, torch.float16),
    ],
)
def test_dtype_override(given, expected):
    assert devices.select_dtype("cpu", given) == expected


def test_unknown_dtype_names_the_parameter():
    with pytest.raises(InvalidParameter) as err:
        devices.select_dtype("cpu", "float8")
    assert err.value.param == "torch_dtype"
    assert "bfloat16, float16, float32" in str(err.value)


def test_cpu_flag_parsing():
    assert devices.cpu_has_native_bf16(ZEN4)
    assert not devices.cpu_has_native_bf16(AVX2_ONLY)
    full_avx2 = "flags\t\t: sse avx avx2 fma f16c\n"
    assert cpu_capabilities.from_cpuinfo(full_avx2) == cpu_capabilities.CpuCapabilities(False, True)
    assert not cpu_capabilities.from_cpuinfo(
        AVX2_ONLY
    ).avx2  # no F16C: the kernels' loops cannot run
    assert cpu_capabilities.from_cpuinfo(GRAVITON).native_bf16


def test_the_cpu_description_can_be_injected_or_named_for_a_server(monkeypatch):
    """Every branch of the path decision runs on any machine: a test injects the CPU it needs,
    a server process is told one with DEEPSHIVA_CPU; nothing else reads /proc/cpuinfo."""
    monkeypatch.delenv("DEEPSHIVA_CPU", raising=False)
    probed = cpu_capabilities.current()
    assert probed == cpu_capabilities.probe()
    for preset in ("native-bf16", "avx2", "portable"):
        with cpu_capabilities.inject(preset) as described:
            assert cpu_capabilities.current() is described is cpu_capabilities.PRESETS[preset]
            assert devices.cpu_has_native_bf16() == (preset == "native-bf16")
            assert devices.select_dtype("cpu") == torch.float32  # see select.master_dtype
    assert cpu_capabilities.current() == probed
    monkeypatch.setenv("DEEPSHIVA_CPU", "portable")
    assert cpu_capabilities.current() == cpu_capabilities.PORTABLE
    assert cpu_capabilities.PORTABLE.describe() == "no SIMD the kernels use"
    monkeypatch.setenv("DEEPSHIVA_CPU", "risc")
    with pytest.raises(
        ValueError, match="DEEPSHIVA_CPU must be one of native-bf16, avx2, portable"
    ):
        cpu_capabilities.current()


def test_cpu_threads_one_for_small_models_all_cores_for_large(monkeypatch):
    monkeypatch.delenv("DEEPSHIVA_THREADS", raising=False)
    monkeypatch.delenv("DEEPSHIVA_CPU_THREADS", raising=False)
    monkeypatch.setattr(devices, "available_cores", lambda: 8)
    assert devices.choose_cpu_threads(10 * 2**20) == 1
    assert devices.choose_cpu_threads(4 * 2**30) == 8
    monkeypatch.setenv("DEEPSHIVA_THREADS", "3")  # the older name still means these threads
    assert devices.choose_cpu_threads(4 * 2**30) == 3
    monkeypatch.setenv("DEEPSHIVA_CPU_THREADS", "2")  # and the new one wins
    assert devices.choose_cpu_threads(4 * 2**30) == 2
    assert devices.choose_cpu_threads(4 * 2**30, requested=5) == 5
    monkeypatch.setenv("DEEPSHIVA_CPU_THREADS", "zero")
    with pytest.raises(InvalidParameter, match="DEEPSHIVA_CPU_THREADS must be a positive integer"):
        devices.choose_cpu_threads(1)


def test_cpu_masters_follow_a_16_bit_checkpoint_and_say_why(hardware):
    """Where the kernels run, a 16-bit checkpoint is held in its own format (the model's one copy,
    int8 replacing it layer by layer); fp32 when asked for, for an fp32 checkpoint, and where the
    kernels do not run. Prompts' GEMMs: bf16 on a native-bf16 CPU, else fp32 widened a matrix at
    a time. The reason names what decided."""
    from core.backends import select

    bf16, fp16, fp32 = torch.bfloat16, torch.float16, torch.float32
    for cpuinfo in (ZEN4, AVX2_ONLY):
        hardware(cpuinfo=cpuinfo)
        for stored, decode, expected, why in (
            (bf16, "auto", bf16, "one copy"),
            (fp16, "auto", fp16, "one copy"),
            (bf16, "int8", bf16, "replaced layer by layer"),
            (bf16, "fp32", fp32, "asked for"),
            (fp32, "auto", fp32, "the checkpoint is fp32"),
        ):
            dtype, reason = select.master_dtype(stored, decode, kernels=True)
            assert dtype == expected and why in reason, reason
        dtype, reason = select.master_dtype(bf16, kernels=False)
        assert dtype == fp32 and "NumPy" in reason
    assert devices.select_dtype("cpu", "bfloat16", fp16, "fp32") == bf16  # asked for
    hardware(cpuinfo=ZEN4)
    assert select.prefill_dtype("bf16")[0] == bf16 and select.prefill_dtype("int8")[0] == bf16
    assert select.prefill_dtype("fp16")[0] == fp32
    hardware(cpuinfo=AVX2_ONLY)
    dtype, reason = select.prefill_dtype("bf16")
    assert dtype == fp32 and "emulates bf16" in reason and "widened a matrix at a time" in reason
