"""Device selection and accelerator helpers: ``auto`` device, AMP dtype, nvJPEG batch decode.

Everything here works (and is tested) on a CPU-only machine; the CUDA branches are guarded by
``torch.cuda.is_available()`` and exercised by the ``gpu``-marked tests.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from audit.errors import UsageError

__all__ = ["DeviceInfo", "resolve_device", "device_info", "amp_dtype", "cpu_bf16_supported", "decode_jpegs_cuda",
           "fits_on_device"]

_DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass
class DeviceInfo:
    """What ``run.json["device"]`` records about the device a stage ran on."""

    type: str
    name: str
    torch: str
    index: int | None = None
    cuda: str | None = None
    memory_gib: float | None = None
    capability: str | None = None
    bf16: bool = False
    threads: int = 1

    def as_dict(self) -> dict:
        return asdict(self)


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(requested: str | None = "auto") -> torch.device:
    """Turn ``auto|cpu|cuda|cuda:N|mps`` into a :class:`torch.device` (``auto``: cuda > mps > cpu).

    Raises
    ------
    UsageError
        When the requested accelerator is not available here.
    """
    req = (requested or "auto").strip().lower()
    base = req.split(":", 1)[0]
    if base not in _DEVICES:
        raise UsageError(f"unknown --device {requested!r}; choose one of auto, cpu, cuda, cuda:N, mps")
    if base == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if base == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {requested} asked for CUDA but no CUDA device is available; use --device cpu")
        dev = torch.device(req)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(f"--device {requested}: only {torch.cuda.device_count()} CUDA device(s) here")
        return dev if dev.index is not None else torch.device("cuda", torch.cuda.current_device())
    if base == "mps" and not _mps_available():
        raise UsageError("--device mps asked for Apple's MPS but it is not available; use --device cpu")
    return torch.device(base)


def _cpu_name() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def device_info(device: torch.device) -> DeviceInfo:
    """Describe ``device`` for provenance."""
    import platform

    info = DeviceInfo(type=device.type, name=_cpu_name() or platform.processor() or platform.machine(),
                      torch=torch.__version__, threads=torch.get_num_threads())
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(idx)
        info.index = idx
        info.name = props.name
        info.cuda = torch.version.cuda
        info.memory_gib = round(props.total_memory / 2**30, 1)
        info.capability = f"{props.major}.{props.minor}"
        info.bf16 = bool(torch.cuda.is_bf16_supported())
    elif device.type == "cpu":
        info.bf16 = cpu_bf16_supported()
    elif device.type == "mps":
        info.name = "Apple MPS"
    return info


def amp_dtype(device: torch.device, enabled: bool = True) -> torch.dtype | None:
    """The autocast dtype to train with, or ``None`` for fp32.

    bf16 on CUDA cards that support it (no loss scaling needed), fp16 on older CUDA cards and on MPS. On CPUs,
    bf16 only where oneDNN has native bf16 kernels (AVX512-BF16 / AMX); elsewhere bf16 emulation is slower than
    fp32, so those CPUs train in fp32.
    """
    if not enabled:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    if device.type == "cpu" and cpu_bf16_supported():
        return torch.bfloat16
    return None


def cpu_bf16_supported() -> bool:
    """Whether this CPU has native bf16 matrix kernels in oneDNN (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def fits_on_device(nbytes: int, device: torch.device, *, share: float = 0.3) -> bool:
    """Whether ``nbytes`` fit in ``share`` of the free memory of a CUDA device (always False off CUDA)."""
    if device.type != "cuda":
        return False
    free, _total = torch.cuda.mem_get_info(device)
    return nbytes <= share * free


def decode_jpegs_cuda(datas: list[torch.Tensor], size: int, device: torch.device) -> list[torch.Tensor | None]:
    """Decode JPEG byte tensors with nvJPEG on ``device`` and resize each to ``size`` x ``size`` (uint8, 3xSxS).

    Returns one entry per input; ``None`` where the GPU decoder refused the file (the caller falls back to
    the CPU decoder, which also reports the error).
    """
    import warnings

    from torchvision.io import ImageReadMode, decode_jpeg

    out: list[torch.Tensor | None] = [None] * len(datas)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            decoded = decode_jpeg(datas, mode=ImageReadMode.RGB, device=device)
        except RuntimeError:
            decoded = []
            for d in datas:  # one bad file fails the whole batch: retry one by one
                try:
                    decoded.append(decode_jpeg(d, mode=ImageReadMode.RGB, device=device))
                except RuntimeError:
                    decoded.append(None)
    for i, img in enumerate(decoded):
        if img is None:
            continue
        x = img.unsqueeze(0).float()
        if x.shape[-2:] != (size, size):
            x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                                              align_corners=False)
        out[i] = x.round_().clamp_(0, 255).to(torch.uint8)[0]
    return out
