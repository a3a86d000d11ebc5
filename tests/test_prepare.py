import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from llmcourse.env import prepare
from llmcourse.env.models import get_model


def test_prepared_gemma_has_a_correct_tokenizer_and_marker():
    folder = prepare.prepare_model("gemma3-270m")  # made by `make prepare`; a no-op here
    info = json.loads((folder / prepare.MARKER).read_text(encoding="utf-8"))
    assert info["gguf_sha256"] == get_model("gemma3-270m").gguf_sha256
    assert info["token_check"]["tokens"] == prepare.EXPECTED_TOKENS["gemma3-270m"]
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.tokenize(prepare.TOKEN_CHECK_TEXT) == prepare.EXPECTED_TOKENS["gemma3-270m"]
    assert tokenizer("hi")["input_ids"][0] == tokenizer.bos_token_id
    assert (folder / "model.safetensors").stat().st_size > 500_000_000  # fp32 weights, no quantizer


def test_prepare_is_idempotent(capsys):
    folder = prepare.prepare_model("gemma3-270m")
    stamp = (folder / prepare.MARKER).stat().st_mtime_ns
    again = prepare.prepare_model("gemma3-270m")
    assert again == folder and (folder / prepare.MARKER).stat().st_mtime_ns == stamp
    out = capsys.readouterr().out
    assert "已准备好" in out and "Gemma Terms of Use" in out  # the licence is shown every time


def test_real_models_need_no_conversion():
    with pytest.raises(ValueError, match="不是替身模型"):
        prepare.prepare_model("qwen3-4b-instruct-2507")


def test_wrong_sha256_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("LLMCOURSE_CACHE", str(tmp_path))
    wrong = dataclasses.replace(get_model("smollm2-135m-instruct"), gguf_sha256="0" * 64)
    monkeypatch.setattr(prepare, "get_model", lambda name: wrong)
    with pytest.raises(RuntimeError, match="sha256"):
        prepare.prepare_model("smollm2-135m-instruct")
    assert not prepare.prepared_dir("smollm2-135m-instruct").exists()


@pytest.mark.slow
def test_killed_conversion_leaves_no_half_written_model(tmp_path):
    env = {**os.environ, "LLMCOURSE_CACHE": str(tmp_path)}
    code = "from llmcourse.env.prepare import prepare_model; prepare_model('smollm2-135m-instruct')"
    target = tmp_path / "models" / "smollm2-135m-instruct"
    process = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list((tmp_path / "models").glob(".smollm2-135m-instruct.partial-*")) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(2)  # mid-conversion
    assert process.poll() is None, "conversion finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not target.exists()

    subprocess.run([sys.executable, "-c", code], env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=600)
    assert (target / prepare.MARKER).is_file() and (target / "model.safetensors").is_file()
    assert not list((tmp_path / "models").glob(".*partial-*")), "stale partial folder was not cleaned"
