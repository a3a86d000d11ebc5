"""Training rows with retrieved passages (RAFT-style), built from Day 1's FAQ."""

import json
import shutil
from collections import Counter

import pytest
from conftest import ROOT, run_cli
from llmcourse.data.context_rows import (
    CONTEXT_SUFFIX,
    add_context_rows,
    context_rows,
    plain_rows,
)
from llmcourse.data.jsonl import load_chat_jsonl
from llmcourse.errors import InputError
from llmcourse.inference.retrieval import CONTEXT_HEADER, faq_passages, passages_of

TRAIN = ROOT / "day1" / "data" / "faq_train.jsonl"


@pytest.fixture(scope="module")
def replaced():
    return context_rows(load_chat_jsonl(TRAIN))


def test_one_question_in_three_gets_the_passages_where_the_retrieval_arm_puts_them(replaced):
    plain = [json.loads(line) for line in TRAIN.read_text(encoding="utf-8").splitlines()]
    assert len(replaced) == len(plain) == 270 and [r["id"] for r in replaced] == [r["id"] for r in plain]
    texts = {p.id: p.text for p in faq_passages(TRAIN)}
    changed = [(row, source) for row, source in zip(replaced, plain) if row != source]
    assert len(changed) == 90 and all("passages" in row for row, _ in changed)
    assert Counter(row["fact_id"] for row, _ in changed) == Counter({row["fact_id"]: 2 for row in plain})
    for row, source in changed:
        assert source["id"].split("-")[1] in {"q2", "q7"}  # the 2nd and 5th question of each fact
        assert row["messages"][1:] == source["messages"][1:]  # question and answer unchanged
        listed = "\n".join(f"[{n}] {texts[p]}" for n, p in enumerate(row["passages"], 1))
        assert row["messages"][0]["content"] == f"{source['messages'][0]['content']}\n\n{CONTEXT_HEADER}\n{listed}"


def test_rows_see_retrieval_as_a_new_wording_would_and_the_right_passage_anywhere(replaced):
    shown = [row["passages"].index(row["fact_id"]) for row in replaced
             if "passages" in row and row["fact_id"] in row["passages"]]
    # With the question's own round in the index, its fact would be found for (nearly) all 90.
    assert len(shown) == 84
    assert min(Counter(shown).values()) >= 20, Counter(shown)  # shuffled: not always passage [1]


def test_running_it_on_its_output_gives_the_same_file_and_the_plain_rows_come_back(tmp_path):
    data = tmp_path / "train.jsonl"
    shutil.copy(TRAIN, data)
    report = add_context_rows(data)
    first = data.read_bytes()
    assert report == {"file": str(data), "rows": 270, "with_passages": 90, "own_fact_shown": 84, "k": 3,
                      "every": 3, "mode": "replace"}
    add_context_rows(data)
    assert data.read_bytes() == first and not list(tmp_path.glob("*.partial"))
    assert [e.to_dict() for e in plain_rows(load_chat_jsonl(data))] == \
           [json.loads(line) for line in TRAIN.read_text(encoding="utf-8").splitlines()]


def test_add_keeps_every_plain_row_first_and_appends_copies(tmp_path):
    rows = context_rows(load_chat_jsonl(TRAIN), add=True)
    plain = [json.loads(line) for line in TRAIN.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 360 and rows[:270] == plain  # data.max_samples keeps taking the same rows
    assert all(row["id"].endswith(CONTEXT_SUFFIX) and "passages" in row for row in rows[270:])
    examples = load_chat_jsonl(TRAIN)
    assert passages_of([*examples, *plain_rows(examples)]) == passages_of(examples)  # a question is indexed once


def test_every_and_k_shape_the_rows():
    rows = [row for row in context_rows(load_chat_jsonl(TRAIN), every=6, k=2) if "passages" in row]
    assert len(rows) == 45 and {len(row["passages"]) for row in rows} == {2}


def test_rows_without_fact_id_get_a_message_naming_the_line(tmp_path):
    data = tmp_path / "train.jsonl"
    lines = TRAIN.read_text(encoding="utf-8").splitlines()[:4]
    row = json.loads(lines[2])
    del row["fact_id"]
    lines[2] = json.dumps(row, ensure_ascii=False)
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    before = data.read_bytes()
    with pytest.raises(InputError, match="第 3 行没有 fact_id"):
        add_context_rows(data)
    assert data.read_bytes() == before
    with pytest.raises(InputError, match="every 和 k 都必须是正整数"):
        context_rows(load_chat_jsonl(TRAIN), every=0)


def test_the_cli_writes_elsewhere_and_reports(tmp_path):
    out = tmp_path / "train_rag.jsonl"
    done = run_cli("data", "add-context", str(TRAIN), "--out", str(out), "--add")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["with_passages"] == 90
    assert len(out.read_text(encoding="utf-8").splitlines()) == 360
    bad = run_cli("data", "add-context", str(tmp_path / "none.jsonl"))
    assert bad.returncode == 2 and "文件不存在" in bad.stderr and "Traceback" not in bad.stderr
