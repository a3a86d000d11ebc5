import hashlib
import json
from pathlib import Path

import pytest

from llmcourse.data.jsonl import DataError, load_chat_jsonl, summarize
from llmcourse.evaluation.scoring import all_facts_present, keyfact_hits
from conftest import TEST_FILE, TRAIN_FILE

MALFORMED = Path(__file__).parent / "data" / "malformed"

# file -> (line, field-or-fragment, message fragment)
EXPECTED = {
    "bad_json.jsonl": (2, "不是合法的 JSON", "列"),
    "not_object.jsonl": (2, "JSON 对象", "list"),
    "missing_messages.jsonl": (2, "messages:", "缺少 messages"),
    "messages_not_list.jsonl": (1, "messages:", "必须是列表"),
    "empty_messages.jsonl": (1, "messages:", "不能为空"),
    "missing_role.jsonl": (1, "messages[0].role", "缺少 role"),
    "wrong_role.jsonl": (2, "messages[0].role", "'human'"),
    "empty_content.jsonl": (1, "messages[0].content", "内容为空"),
    "content_not_string.jsonl": (1, "messages[0].content", "必须是字符串"),
    "not_alternating.jsonl": (1, "messages[1].role", "应为 assistant"),
    "ends_with_user.jsonl": (1, "messages:", "最后一条必须是 assistant"),
    "system_not_first.jsonl": (1, "messages[1].role", "system 只能出现在第一条"),
    "key_facts_wrong_type.jsonl": (1, "key_facts:", "列表"),
    "extra_message_field.jsonl": (1, "messages[0]:", "多余字段"),
    "gbk_encoding.jsonl": (2, "编码错误", "UTF-8"),
    "empty_file.jsonl": (None, "没有任何样本", ""),
}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_corpus_is_complete():
    assert {p.name for p in MALFORMED.glob("*.jsonl")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_malformed_file_gets_file_line_field_error_and_is_untouched(name):
    path = MALFORMED / name
    before = _digest(path)
    line, field, fragment = EXPECTED[name]
    with pytest.raises(DataError) as caught:
        load_chat_jsonl(path)
    message = str(caught.value)
    location = f"{path}:{line}:" if line else f"{path}:"
    assert location in message, message
    assert field in message and fragment in message, message
    assert _digest(path) == before


def test_every_problem_of_a_file_is_listed(tmp_path):
    path = tmp_path / "two.jsonl"
    path.write_text('{"messages": 1}\nnot json\n', encoding="utf-8")
    with pytest.raises(DataError) as caught:
        load_chat_jsonl(path)
    assert len(caught.value.problems) == 2
    assert f"{path}:1:" in str(caught.value) and f"{path}:2:" in str(caught.value)


def test_missing_file():
    with pytest.raises(DataError, match="文件不存在"):
        load_chat_jsonl("no/such/file.jsonl")


def test_shipped_faq_dataset_is_valid_and_rich_enough():
    train, test = load_chat_jsonl(TRAIN_FILE), load_chat_jsonl(TEST_FILE)
    facts = {e.meta["fact_id"] for e in train}
    assert len(facts) >= 40
    assert facts == {e.meta["fact_id"] for e in test}
    per_fact = summarize(train)["examples"] / len(facts)
    assert per_fact >= 3
    for example in train + test:
        assert example.key_facts and all_facts_present(example.answer, example.key_facts), example.meta["id"]


def test_test_questions_are_never_seen_in_training():
    def normal(text: str) -> str:
        return "".join(ch for ch in text if ch.isalnum())
    seen = {normal(e.question) for e in load_chat_jsonl(TRAIN_FILE)}
    assert not [e.meta["id"] for e in load_chat_jsonl(TEST_FILE) if normal(e.question) in seen]


def test_max_samples_and_summary():
    rows = load_chat_jsonl(TRAIN_FILE, max_samples=10)
    summary = summarize(rows)
    assert summary["examples"] == 10 and summary["answer_chars_max"] >= summary["answer_chars_median"] > 0


def test_keyfact_scoring():
    assert keyfact_hits("保修期为 2年，热线400-860-2025", ["2年", "400-860-2025"]) == 2
    assert not all_facts_present("保修期两年", ["2年"])
    assert not all_facts_present("任何回答", [])


def test_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.jsonl"
    row = {"messages": [{"role": "user", "content": "问"}, {"role": "assistant", "content": "答"}]}
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n")
    assert len(load_chat_jsonl(path)) == 1
