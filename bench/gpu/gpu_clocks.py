"""The GPU's SM clock, power draw and temperature while a region of a benchmark runs.

Kernel times on a lent H100 move by a few percent with the card's power and clock state, which
depends on what ran before and on the mix of kernels. Benchmarks record these readings beside the
times they explain. Reading them needs NVML (the nvidia-ml-py package); without it the sampler
records nothing. It only reads: the card's clocks and limits are never changed.

    with ClockSampler() as clocks:
        run_the_region()
    clocks.summary()   # {"sm_mhz_mean": ..., "sm_mhz_min": ..., "power_w_mean": ..., "temp_c_max": ...} or None
"""

from __future__ import annotations

import threading

try:
    import pynvml
except ImportError:  # the readings are optional
    pynvml = None


class ClockSampler:
    """Samples NVML every `interval_s` seconds on a background thread between enter and exit."""

    def __init__(self, device_index: int = 0, interval_s: float = 0.02):
        self.interval_s = interval_s
        self.samples: list = []
        self._stop = threading.Event()
        self._thread = None
        self._handle = None
        if pynvml is not None:
            try:
                pynvml.nvmlInit()
                self._handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
            except pynvml.NVMLError:
                self._handle = None

    def _read(self) -> tuple:
        return (pynvml.nvmlDeviceGetClockInfo(self._handle, pynvml.NVML_CLOCK_SM),
                pynvml.nvmlDeviceGetPowerUsage(self._handle) / 1000.0,
                pynvml.nvmlDeviceGetTemperature(self._handle, pynvml.NVML_TEMPERATURE_GPU))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.samples.append(self._read())
            except pynvml.NVMLError:
                return

    def __enter__(self) -> "ClockSampler":
        if self._handle is not None:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        if self._handle is not None:
            pynvml.nvmlShutdown()  # balances the nvmlInit of __init__
            self._handle = None

    def summary(self):
        if not self.samples:
            return None
        sm = [s[0] for s in self.samples]
        power = [s[1] for s in self.samples]
        return {"sm_mhz_mean": sum(sm) / len(sm), "sm_mhz_min": min(sm), "power_w_mean": sum(power) / len(power),
                "temp_c_max": max(s[2] for s in self.samples), "samples": len(self.samples)}


def format_clocks(summary) -> str:
    if summary is None:
        return "clocks: not read (no NVML)"
    return (f"SM clock {summary['sm_mhz_mean']:.0f} MHz (min {summary['sm_mhz_min']}), "
            f"{summary['power_w_mean']:.0f} W, up to {summary['temp_c_max']} C")
