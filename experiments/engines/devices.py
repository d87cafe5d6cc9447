"""What a device can do, and what it did here: the approximate peak rates of known GPUs
and the training rates ``scripts/benchmark.py`` measured, so a grid's cost can be
stated before it runs (:mod:`experiments.grid.cost`).

Peaks (:data:`PEAKS`) are NVIDIA's datasheet figures in TFLOP/s, dense (the datasheets
give the tensor-core figures with 2:4 sparsity; half of those here), for plain float32,
TF32 and bfloat16 products. A run cannot go faster than its precision's peak, so a time
from a peak is a floor. Measured rates are kept in one JSON file,
``$AMSGRAD_CACHE_DIR/rates.json`` (default ``~/.cache/amsgrad-experiments/rates.json``),
one entry per device, engine, model and precision, written by ``benchmark.py grid`` and
``benchmark.py gpu``::

    {"rates": [{"device": "NVIDIA H200", "engine": "jax", "model": "vgg",
                "precision": "highest", "flops_per_s": 3.1e13, "group_size": 24,
                "measured": "2025-01-31", "by": "benchmark.py gpu"}]}

A device is named by its kind (``NVIDIA H200``); a CPU by its model and core count
(``CPU AMD EPYC (2 cores)``), since every CPU's JAX kind is just ``cpu``.
"""
import datetime
import json
import os
import warnings
from pathlib import Path

from experiments.results.files import atomic_write_text

__all__ = ["PEAKS", "cache_root", "rates_path", "device_name", "peak", "recorded_rate",
           "record_rate"]

#: (name the device kind contains, float32, TF32, bfloat16 dense TFLOP/s; None: no such
#: units), the first match deciding: NVIDIA datasheets, approximate. The V100 has no
#: TF32 or bfloat16 units: XLA computes 'default' and 'tf32' in float32 there.
PEAKS = (
    ("H200 NVL", 60.0, 418.0, 835.0),
    ("H200", 67.0, 495.0, 990.0),  # SXM
    ("H100 NVL", 60.0, 418.0, 835.0),
    ("H100 PCIe", 51.0, 378.0, 756.0),
    ("H100", 67.0, 495.0, 990.0),  # SXM
    ("A100", 19.5, 156.0, 312.0),
    ("V100-PCIE", 14.0, None, None),
    ("V100", 15.7, None, None),  # SXM2
)

#: Which units a setup's ``precision`` runs on, where the device has them: the emulated
#: precisions compute in full float32 (their operands rounded first).
_UNITS = {"highest": "fp32", "tf32_emulated": "fp32", "bf16_emulated": "fp32",
          "default": "tf32", "tf32": "tf32", "bf16": "bf16"}


def cache_root(environ=None):
    """The suite's cache folder: ``$AMSGRAD_CACHE_DIR``, else the user cache."""
    environ = os.environ if environ is None else environ
    root = environ.get("AMSGRAD_CACHE_DIR") or Path.home() / ".cache" / "amsgrad-experiments"
    return Path(root).expanduser()


def rates_path(environ=None):
    """Where measured rates are kept (see the module docstring)."""
    return cache_root(environ) / "rates.json"


def device_name(device=None):
    """The name rates are kept under: a GPU's kind, or the CPU's model and core count
    for a CPU device (``None``: this host's CPU)."""
    if device is not None and getattr(device, "platform", "cpu") != "cpu":
        return str(device.device_kind)
    model = "unknown model"
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            model = next((line.split(":", 1)[1].strip() for line in f
                          if line.startswith("model name")), model)
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"CPU {model} ({cores} cores)"


def peak(device, precision):
    """``(FLOP/s, units)`` of ``device`` (a :func:`device_name`) at the setup's
    ``precision`` from :data:`PEAKS`, or None where it is not known (a CPU, an unlisted
    GPU, bfloat16 on a GPU without it). ``default`` and ``tf32`` use TF32 units where
    the device has them (XLA's float32 default on such GPUs), else float32."""
    for name, *rates in PEAKS:
        if name in device:
            by_units = dict(zip(("fp32", "tf32", "bf16"), rates))
            units = _UNITS[precision]
            if units == "tf32" and by_units["tf32"] is None:
                units = "fp32"
            return None if by_units[units] is None else (by_units[units] * 1e12, units)
    return None


def _entries(path):
    try:
        with open(path, encoding="utf-8") as f:
            entries = json.load(f)["rates"]
        return [e for e in entries if isinstance(e, dict)]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as e:
        warnings.warn(f"{path}: unreadable ({type(e).__name__}), taken as empty; a "
                      f"benchmark rewrites it")
        return []


def _key(entry):
    return tuple(entry.get(k) for k in ("device", "engine", "model", "precision"))


def recorded_rate(device, engine, model, precision, path=None):
    """The entry measured for this device, engine, model and precision, or None."""
    want = (device, engine, model, precision)
    return next((e for e in _entries(path or rates_path()) if _key(e) == want), None)


def record_rate(device, engine, model, precision, flops_per_s, by, path=None, **facts):
    """Keep a measured rate (replacing the one of the same key); returns the path."""
    path = Path(path or rates_path())
    entry = {"device": device, "engine": engine, "model": model, "precision": precision,
             "flops_per_s": float(flops_per_s), **facts,
             "measured": datetime.date.today().isoformat(), "by": by}
    entries = [e for e in _entries(path) if _key(e) != _key(entry)] + [entry]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(str(path), json.dumps({"rates": entries}, indent=1) + "\n")
    return path
