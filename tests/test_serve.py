"""The CPU-lane API: auth, the OpenAI wire format (through the real openai client), streaming, 4xx corpus."""

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llmcourse.serving.api_checks import load_corpus, replay
from llmcourse.serving.chat import multi_turn, stream_answer
from llmcourse.config import ConfigError, build_config
from llmcourse.serving.server import create_app, resolve_adapter, resolve_api_key, vllm_command

KEY = "sk-unit"


class EchoModel:
    """Answers with the number of messages it saw and the last question, so history is visible."""

    def __init__(self):
        self.seen = []

    def encode(self, messages):
        import torch
        self.seen.append(messages)
        return {"input_ids": torch.ones((1, sum(len(m["content"]) for m in messages)), dtype=torch.long),
                "messages": messages}

    def _answer(self, encoded):
        messages = encoded["messages"]
        return f"共{len(messages)}条：{messages[-1]['content']}"

    def complete(self, encoded, max_tokens, temperature, top_p, seed):
        return {"text": self._answer(encoded), "completion_tokens": 3, "finish_reason": "stop"}

    def stream(self, encoded, max_tokens, temperature, top_p, seed):
        return EchoStream(self._answer(encoded))


class EchoStream(list):
    """Like a batcher job: iterable pieces, then the usage figures."""

    def __init__(self, text):
        super().__init__(text)
        self.completion_tokens, self.finish_reason = len(text), "stop"


@pytest.fixture()
def app_client():
    cfg = build_config({"serve": {"max_model_len": 2048}})
    model = EchoModel()
    with TestClient(create_app(cfg, KEY, model), base_url="http://testserver") as client:
        client.model = model
        yield client


def test_health_is_open_but_the_api_needs_the_key(app_client):
    assert app_client.get("/health").json()["status"] == "ok"
    assert app_client.get("/v1/models").status_code == 401
    listed = app_client.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert [m["id"] for m in listed["data"]] == ["course-lora"]


def test_openai_client_multi_turn_carries_history(app_client):
    from llmcourse.serving import chat

    original = chat.client
    chat.client = lambda base_url, api_key, timeout=300: __import__("openai").OpenAI(
        base_url=base_url, api_key=api_key, http_client=app_client, max_retries=0)
    try:
        turns = multi_turn("http://testserver/v1", KEY, "course-lora", ["第一问", "第二问"], system="系统")
        pieces = list(stream_answer("http://testserver/v1", KEY, "course-lora", [{"role": "user", "content": "流"}]))
    finally:
        chat.client = original
    assert [t.messages_sent for t in turns] == [2, 4]
    assert turns[1].answer == "共4条：第二问"
    assert app_client.model.seen[1][2] == {"role": "assistant", "content": "共2条：第一问"}
    assert "".join(pieces) == "共1条：流" and len(pieces) > 1


def test_stream_ends_with_usage_and_done(app_client):
    body = {"model": "course-lora", "messages": [{"role": "user", "content": "hi"}], "stream": True,
            "stream_options": {"include_usage": True}}
    response = app_client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"})
    events = [line[len("data: "):] for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] == len("共1条：hi")


def test_malformed_request_corpus_gets_4xx_json(app_client):
    results = replay("http://testserver", load_corpus(), KEY, client=app_client)
    wrong = [r for r in results if not r["ok"]]
    assert not wrong, wrong
    assert len(results) >= 40 and all(400 <= r["status"] < 500 for r in results)
    assert app_client.get("/health").status_code == 200


def test_api_key_is_required():
    with pytest.raises(ConfigError, match="LLMCOURSE_API_KEY"):
        resolve_api_key(build_config({}))
    assert resolve_api_key(build_config({"serve": {"api_key": "k"}})) == "k"


def test_missing_adapter_says_what_to_do(tmp_path):
    cfg = build_config({"train": {"output_dir": str(tmp_path / "run")}})
    with pytest.raises(ConfigError, match="llmcourse train"):
        resolve_adapter(cfg)
    assert resolve_adapter(build_config({"serve": {"use_adapter": False}})) is None


def test_vllm_command_serves_the_unmerged_adapter(tmp_path):
    cfg = build_config({"model": {"name": "qwen3-4b-instruct-2507", "source": "hf", "device": "cpu"}, "lora": {"r": 32},
                        "serve": {"served_model_name": "faq", "port": 9000, "api_key": "sk-secret"}})
    import llmcourse.env.vllm_lane as lane
    original, lane._model_template = lane._model_template, lambda cfg: "{{ messages[0]['content'] }}"
    try:
        command = vllm_command(cfg, tmp_path / "adapter", template_dir=tmp_path)
    finally:
        lane._model_template = original
    assert command[1:4] == ["-m", "vllm.entrypoints.openai.api_server", "--model"]
    assert command[4] == "Qwen/Qwen3-4B-Instruct-2507"
    assert "--enable-lora" in command and f"faq={tmp_path / 'adapter'}" in command
    assert command[command.index("--max-lora-rank") + 1] == "32"
    assert command[command.index("--max-num-seqs") + 1] == str(cfg.serve.max_batch)
    assert "--enforce-eager" in command  # CPU: no graph compilation at start
    assert "sk-secret" not in " ".join(command)  # the key travels in VLLM_API_KEY, not in `ps` output
    template = Path(command[command.index("--chat-template") + 1]).read_text(encoding="utf-8")
    assert template.endswith("{{ messages[0]['content'] }}") and "default_system" in template


def test_vllm_command_rounds_the_lora_rank_up(tmp_path):
    cfg = build_config({"model": {"device": "cpu"}, "lora": {"r": 4, "lora_alpha": 8}})
    command = vllm_command(cfg, tmp_path / "adapter", template_dir=tmp_path)
    assert command[command.index("--max-lora-rank") + 1] == "8"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["model", "messages", "role", "content", "max_tokens", "stream", "temperature", "n", "x"]),
        inner, max_size=5),
    max_leaves=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=json_values)
def test_any_json_body_gets_an_answer_below_500(app_client, payload):
    response = app_client.post("/v1/chat/completions", content=json.dumps(payload),
                               headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert response.status_code < 500
    if response.status_code >= 400:
        assert response.json()["error"]["message"]


def test_cli_explains_a_missing_key_and_an_unreachable_server(monkeypatch):
    from conftest import run_cli

    monkeypatch.delenv("LLMCOURSE_API_KEY", raising=False)
    done = run_cli("serve", "day3/config.yaml", "serve.use_adapter=false", timeout=120)
    assert done.returncode == 2 and "LLMCOURSE_API_KEY" in done.stderr and "Traceback" not in done.stderr
    monkeypatch.setenv("LLMCOURSE_API_KEY", "sk-x")
    done = run_cli("chat", "day3/config.yaml", "你好", "--base-url", "http://127.0.0.1:9/v1", timeout=120)
    assert done.returncode == 2 and "连不上服务" in done.stderr and "Traceback" not in done.stderr


def test_requests_without_a_system_message_get_the_training_one():
    cfg = build_config({"data": {"system_prompt": "你是{labels}分类器", "labels": ["退款", "配送"]}})
    model = EchoModel()
    with TestClient(create_app(cfg, KEY, model)) as client:
        headers = {"Authorization": f"Bearer {KEY}"}
        for messages in ([{"role": "user", "content": "问"}],
                         [{"role": "system", "content": "自定义"}, {"role": "user", "content": "问"}]):
            body = {"model": "course-lora", "messages": messages}
            assert client.post("/v1/chat/completions", json=body, headers=headers).status_code == 200
    assert model.seen[0][0] == {"role": "system", "content": "你是退款、配送分类器"}
    assert model.seen[1][0] == {"role": "system", "content": "自定义"} and len(model.seen[1]) == 2
