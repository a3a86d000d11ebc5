import json

import pytest

from llmcourse import lane


def test_auto_is_cpu_without_a_gpu_and_cuda_is_refused(monkeypatch):
    monkeypatch.setattr(lane, "cuda_available", lambda: False)
    assert lane.resolve_device("auto") == "cpu"
    assert lane.resolve_device("cpu") == "cpu"
    with pytest.raises(RuntimeError, match="没有可用的 GPU"):
        lane.resolve_device("cuda")


def test_auto_is_cuda_with_a_gpu(monkeypatch):
    monkeypatch.setattr(lane, "cuda_available", lambda: True)
    assert lane.resolve_device("auto") == "cuda"


def test_environment_report_is_json_with_versions():
    report = json.loads(json.dumps(lane.environment_report("cpu", "trl")))
    assert report["device"] == "cpu" and report["engine"] == "trl"
    assert report["versions"]["torch"] and report["hardware"]["cpu_cores"] >= 1


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LLMCOURSE_CACHE", str(tmp_path))
    assert lane.cache_dir() == tmp_path


def test_doctor_reports_missing_stand_ins(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("LLMCOURSE_CACHE", str(tmp_path))
    todo = lane.doctor()
    out = capsys.readouterr().out
    assert "通道 lane: cpu" in out and "transformers" in out and str(tmp_path) in out
    assert any("prepare-model gemma3-270m" in item for item in todo)


def test_print_lane_prints_device_and_seed(capsys):
    assert lane.print_lane(seed=7) in ("cpu", "cuda")
    assert "随机种子 7" in capsys.readouterr().out
