import json
import re

import pytest

from llmcourse.evaluation.cases import load_cases, save_cases
from llmcourse.data.jsonl import DataError
from conftest import ROOT

DEFAULT = ROOT / "day2" / "data" / "default_cases.jsonl"


def test_default_cases_are_enough_and_varied():
    cases = load_cases(DEFAULT)
    kinds = {case["kind"] for case in cases}
    assert len(cases) >= 20 and {"faq", "out_of_domain", "multi_turn"} <= kinds
    multi = [c for c in cases if c["kind"] == "multi_turn"]
    assert all(sum(m["role"] == "user" for m in c["messages"]) == 2 for c in multi)


def test_default_faq_cases_are_never_training_questions():
    train = {json.loads(line)["messages"][1]["content"] for line in (ROOT / "day1" / "data" / "faq_train.jsonl").open()}
    assert not [c["case_id"] for c in load_cases(DEFAULT) if c["kind"] == "faq" and c["messages"][-1]["content"] in train]


@pytest.mark.parametrize("row, message", [
    ({"messages": [{"role": "user", "content": "问"}], "key_facts": ["a"]}, "case_id"),
    ({"case_id": "x", "messages": [{"role": "user", "content": "问"}]}, "至少给出"),
    ({"case_id": "x", "messages": [{"role": "user", "content": "问"}, {"role": "assistant", "content": "答"}],
      "key_facts": ["a"]}, "最后一条必须是 user"),
    ({"case_id": "x", "messages": [{"role": "bot", "content": "问"}], "key_facts": ["a"]}, "messages[0]"),
])
def test_bad_cases_name_file_line_and_field(tmp_path, row, message):
    path = tmp_path / "cases.jsonl"
    path.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(message)) as caught:
        load_cases(path)
    assert f"{path}:1:" in str(caught.value)


def test_duplicate_ids_and_round_trip(tmp_path):
    case = {"case_id": "a", "messages": [{"role": "user", "content": "问"}], "key_facts": ["x"]}
    path = save_cases(tmp_path / "c.jsonl", [case])
    assert load_cases(path) == [case]
    path.write_text((json.dumps(case) + "\n") * 2)
    with pytest.raises(DataError, match="重复"):
        load_cases(path)
