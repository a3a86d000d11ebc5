import pytest

from llmcourse.env.models import DEFAULT_CPU_MODEL, DEFAULT_GPU_MODEL, MODEL_NAMES, REGISTRY, STAND_INS, get_model


def test_registry_has_the_course_models():
    assert {"gemma3-270m", "smollm2-135m-instruct", "qwen3-4b-instruct-2507", "qwen3-8b",
            "llama3-8b-instruct"} <= set(MODEL_NAMES)
    assert set(STAND_INS) == {"gemma3-270m", "smollm2-135m-instruct"}
    assert DEFAULT_CPU_MODEL in STAND_INS and DEFAULT_GPU_MODEL not in STAND_INS


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_is_fully_described(name):
    spec = get_model(name)
    assert spec.hub_id("hf") and spec.hub_id("modelscope")
    assert spec.target_modules and spec.stop_strings and spec.licence
    assert spec.instruction_part and spec.response_part
    assert {"r", "lora_alpha", "learning_rate", "max_steps"} <= set(spec.recommended)
    if spec.is_stand_in:
        assert spec.gguf_file and spec.gguf_sha256 and len(spec.gguf_sha256) == 64


def test_only_qwen3_hybrid_understands_thinking():
    assert [n for n, s in REGISTRY.items() if s.thinking] == ["qwen3-8b"]


def test_gemma_template_matches_its_loss_markers():
    from jinja2 import Template
    spec = get_model("gemma3-270m")
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"},
                {"role": "assistant", "content": "A"}]
    text = Template(spec.chat_template).render(bos_token="<bos>", messages=messages)
    assert text == "<bos><start_of_turn>user\nS\n\nQ<end_of_turn>\n<start_of_turn>model\nA<end_of_turn>\n"
    prompt = Template(spec.chat_template).render(bos_token="<bos>", messages=messages[:2], add_generation_prompt=True)
    assert prompt.endswith(spec.response_part) and spec.instruction_part in prompt


def test_unknown_model_lists_choices():
    with pytest.raises(KeyError, match="gemma3-270m"):
        get_model("gpt2")
