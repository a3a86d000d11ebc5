from conftest import CPU_CONFIG, TRAIN_FILE, run_cli


def test_check_config_prints_the_resolved_config():
    done = run_cli("check-config", str(CPU_CONFIG), "lora.r=8")
    assert done.returncode == 0, done.stderr
    assert "r: 8" in done.stdout and "engine: auto" in done.stdout


def test_bad_override_is_one_clear_message_without_traceback():
    done = run_cli("check-config", str(CPU_CONFIG), "lora.r=-2", "train.engine=fast")
    assert done.returncode == 2
    assert "lora.r" in done.stderr and "train.engine" in done.stderr and "'unsloth'" in done.stderr
    assert "Traceback" not in done.stderr


def test_train_with_bad_data_stops_with_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": ""}]}\n', encoding="utf-8")
    done = run_cli("train", str(CPU_CONFIG), f"data.train_file={bad}", f"train.output_dir={tmp_path / 'run'}")
    assert done.returncode == 2 and f"{bad}:1: messages[0].content" in done.stderr
    assert "Traceback" not in done.stderr


def test_data_summary():
    done = run_cli("data-summary", str(TRAIN_FILE))
    assert done.returncode == 0 and '"examples": 270' in done.stdout


def test_doctor_runs():
    done = run_cli("doctor")
    assert done.returncode == 0 and "transformers" in done.stdout and "engines" in done.stdout
