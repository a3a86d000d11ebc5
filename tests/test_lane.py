import json

import pytest

from llmcourse.env import lane


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




def test_print_lane_prints_device_and_seed(capsys):
    assert lane.print_lane(seed=7) in ("cpu", "cuda")
    assert "随机种子 7" in capsys.readouterr().out


def test_version_drift_names_the_package_the_pin_and_where_it_is_pinned():
    assert lane.version_drift(installed={"transformers": "5.17.0", "trl": "1.15.0"}, extras={"unsloth"}) == []
    drift = lane.version_drift(installed={"transformers": "5.24.0", "trl": "1.15.0"}, extras={"unsloth"})
    assert drift == [{"package": "transformers", "installed": "5.24.0", "required": "==5.17.0",
                      "source": "pyproject.toml [unsloth]"}]
    assert {d["package"] for d in lane.version_drift(installed={"transformers": "5.17.0", "trl": "1.15.0"},
                                                     extras={"trl"})} == {"transformers", "trl"}




def test_versions_changed_since_a_run(tmp_path):
    (tmp_path / "env.json").write_text(json.dumps({"versions": {"torch": lane.library_version("torch"),
                                                                "transformers": "0.0.1"}}))
    assert lane.versions_changed_since(tmp_path) == [{"package": "transformers", "then": "0.0.1",
                                                      "now": lane.library_version("transformers")}]
