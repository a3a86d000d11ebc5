import pytest

from llmcourse.config import load_config
from llmcourse.data.jsonl import load_chat_jsonl
from llmcourse.inference.engines import Generation, TransformersEngine, available_engines, load_engine
from conftest import CPU_CONFIG, TEST_FILE


@pytest.fixture(scope="module")
def engine():
    return TransformersEngine(load_config(CPU_CONFIG, **{"infer.max_tokens": 8}))


def test_batched_generation_returns_one_result_per_prompt(engine):
    prompts = [e.prompt_messages for e in load_chat_jsonl(TEST_FILE)[:3]]
    results = engine.generate(prompts, batch_size=2)
    assert len(results) == 3 and all(isinstance(r, Generation) for r in results)
    for result in results:
        assert 1 <= result.output_tokens <= 8 and result.prompt_tokens > 10
        assert result.latency_s > 0 and result.tokens_per_s == pytest.approx(result.output_tokens / result.latency_s, rel=0.01)
        assert result.ttft_s is not None and 0 < result.ttft_s <= result.latency_s
    assert engine.tokenizer.padding_side == "left"


def test_batched_and_single_greedy_answers_agree(engine):
    prompts = [e.prompt_messages for e in load_chat_jsonl(TEST_FILE)[:2]]
    batched = [r.text for r in engine.generate(prompts, batch_size=2)]
    single = [r.text for r in engine.generate(prompts, batch_size=1)]
    assert batched == single


def test_auto_starts_no_vllm_worker_and_missing_vllm_says_what_to_do(monkeypatch):
    import llmcourse.env.vllm_lane as vllm_lane
    from llmcourse.inference.engines import default_engines

    if not vllm_lane.importable_here():
        assert default_engines() == ["transformers"]  # auto: no vLLM worker start behind the learner's back
    monkeypatch.setattr(vllm_lane, "vllm_python", lambda: None)
    assert available_engines() == ["transformers"]
    with pytest.raises(RuntimeError, match="make setup"):
        load_engine(load_config(CPU_CONFIG), engine="vllm")


def test_screened_head_keeps_the_fp32_greedy_choice(engine):
    import torch
    head = engine.head
    if head is None:
        pytest.skip("the screened head is only used on CPUs with native bf16")
    torch.manual_seed(0)
    hidden = torch.randn(4, 1, head.exact.weight.shape[1]) * 3
    exact = head.exact(hidden)
    head.screen = True
    try:
        screened = head(hidden)
    finally:
        head.screen = False
    kept = torch.isfinite(screened)
    assert int(kept.sum()) == 4 * head.candidates
    torch.testing.assert_close(screened[kept], exact[kept])
    assert torch.equal(screened.argmax(-1), exact.argmax(-1))
    prompts = [e.prompt_messages for e in load_chat_jsonl(TEST_FILE)[2:4]]
    fast = [r.text for r in engine.generate(prompts, batch_size=2)]
    engine.use_screened_head = False
    try:
        plain = [r.text for r in engine.generate(prompts, batch_size=2)]
    finally:
        engine.use_screened_head = True
    assert fast == plain


def test_every_load_raises_where_model_loads_are_forbidden(monkeypatch):
    """LLMCOURSE_NO_MODEL_LOADS (set by the real-submission grading test): loads and engine starts raise."""
    from llmcourse.inference.engines import VLLMWorkerEngine, load_weights
    from llmcourse.env.models import NO_MODEL_LOADS, ModelLoadForbidden
    from llmcourse.training.run import train
    from llmcourse.env.vllm_lane import engine_args

    cfg = load_config(CPU_CONFIG)
    monkeypatch.setenv(NO_MODEL_LOADS, "1")
    for load in (lambda: load_weights(cfg), lambda: TransformersEngine(cfg), lambda: VLLMWorkerEngine(cfg),
                 lambda: engine_args(cfg), lambda: train(cfg)):
        with pytest.raises(ModelLoadForbidden, match=NO_MODEL_LOADS):
            load()
