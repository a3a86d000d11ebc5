"""`llmcourse doctor` (llmcourse/env/doctor.py)."""
from llmcourse.env import doctor


def test_doctor_reports_missing_stand_ins(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("LLMCOURSE_CACHE", str(tmp_path))
    todo = doctor.doctor()
    out = capsys.readouterr().out
    assert "通道 lane: cpu" in out and "transformers" in out and str(tmp_path) in out
    assert any("prepare-model gemma3-270m" in item for item in todo)


def test_doctor_lists_drift_with_the_command_that_restores_the_pins(monkeypatch, capsys):
    monkeypatch.setattr(doctor, "version_drift", lambda: [{"package": "trl", "installed": "1.16.0",
                                                         "required": "==1.15.0", "source": "pyproject.toml [unsloth]"}])
    todo = doctor.doctor()
    assert any("trl 的版本是 1.16.0" in item and "pip install" in item and "-e '.[" in item for item in todo)
    assert "trl 的版本是 1.16.0" in capsys.readouterr().out
