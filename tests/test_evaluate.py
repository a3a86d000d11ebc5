from llmcourse.config import load_config
from llmcourse.data import load_chat_jsonl
from llmcourse.evaluate import generate_answers, load_for_generation, score
from conftest import CPU_CONFIG, TEST_FILE


def test_base_model_generates_batched_answers():
    cfg = load_config(CPU_CONFIG, **{"infer.max_tokens": 6})
    model, tokenizer = load_for_generation(cfg)
    examples = load_chat_jsonl(TEST_FILE)[:3]
    answers = generate_answers(model, tokenizer, cfg, [e.prompt_messages for e in examples], batch_size=2)
    assert len(answers) == 3 and all(isinstance(a, str) for a in answers)
    assert tokenizer.padding_side == "left"


def test_score_counts_complete_answers_only():
    examples = load_chat_jsonl(TEST_FILE)[:2]
    answers = [examples[0].answer, "不知道"]
    result = score(examples, answers)
    assert result["questions"] == 2 and result["correct"] == 1 and result["accuracy"] == 0.5
    assert 0 < result["keyfact_hit_rate"] < 1
