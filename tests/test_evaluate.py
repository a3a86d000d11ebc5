from llmcourse.data.jsonl import load_chat_jsonl
from llmcourse.evaluation.ask import score
from conftest import TEST_FILE


def test_score_counts_complete_answers_only():
    examples = load_chat_jsonl(TEST_FILE)[:2]
    answers = [examples[0].answer, "不知道"]
    result = score(examples, answers)
    assert result["questions"] == 2 and result["correct"] == 1 and result["accuracy"] == 0.5
    assert 0 < result["keyfact_hit_rate"] < 1
