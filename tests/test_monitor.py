import time

from llmcourse.inference.monitor import UNAVAILABLE, ResourceMonitor


def test_cpu_lane_reports_rss_and_marks_gpu_unavailable():
    with ResourceMonitor("cpu", interval=0.02) as monitor:
        block = bytearray(200 * 2**20)  # 200 MB the monitor should see
        time.sleep(0.2)
        sum(range(200_000))
    del block
    summary = monitor.summary
    assert summary["device"] == "cpu" and summary["memory_kind"] == "cpu_rss"
    assert summary["peak_memory_mb"] == summary["peak_rss_mb"] > 200
    assert summary["samples"] >= 3 and summary["seconds"] >= 0.2
    assert isinstance(summary["mean_cpu_percent"], float)
    for key in ("peak_gpu_memory_mb", "mean_gpu_util_percent", "torch_peak_allocated_mb"):
        assert summary[key] == UNAVAILABLE  # never a false 0


def test_nvml_missing_is_unavailable_not_zero(monkeypatch):
    from llmcourse.inference import monitor as module
    monkeypatch.setattr(module, "_nvml_handle", lambda: None)
    assert module._nvml_handle() is None
