"""The retrieval arm: jieba words, a bm25s index over the FAQ, top-k hit rate, augmented prompts, four arms."""
import json

import pandas as pd
import pytest

from conftest import CPU_CONFIG, ROOT, TEST_FILE, TRAIN_FILE
from llmcourse.data.jsonl import load_chat_jsonl
from llmcourse.errors import CourseError
from llmcourse.inference.retrieval import (CONTEXT_HEADER, Passage, Retriever, augment_messages, faq_passages,
                                           hit_rate, query_of, tokenize)

# Measured with this index (answer + training questions, STOP_WORDS dropped, bm25s defaults) on the 90
# held-out paraphrases of Day 1, 6 training phrasings a fact: top-1 72/90 (0.800), top-3 82/90 (0.911); with
# 3 phrasings a fact, top-1 63/90 and top-3 83/90. The answer alone: top-3 69/90.
TOP1_AT_LEAST, TOP3_AT_LEAST = 0.65, 0.88


@pytest.fixture(scope="module")
def faq():
    return Retriever.build(faq_passages(TRAIN_FILE), k=3)


def test_tokenize_splits_chinese_into_words_without_punctuation_or_stop_words():
    words = tokenize("七天无理由退货你们支持吗？")
    assert words == ["七天", "无", "理由", "退货", "支持"]  # jieba 0.42.1's default dictionary
    assert "吗" not in words and "你们" not in words and "？" not in words
    assert tokenize("Type-C 接口") == ["type", "c", "接口"]  # lower-cased, the hyphen dropped
    assert tokenize("") == [] and tokenize("？！") == []


def test_jieba_is_quiet_and_caches_in_the_course_cache(tmp_path):
    import subprocess
    import sys
    env = {"LLMCOURSE_CACHE": str(tmp_path), "PATH": ""}
    code = "from llmcourse.inference.retrieval import tokenize; print(tokenize('智能门锁保修多久'))"
    for _ in range(2):  # the second run reads the cache the first one wrote
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        assert done.stderr == "", done.stderr  # no "Building prefix dict ..." / "Loading model cost ..."
        assert "保修" in done.stdout
    assert (tmp_path / "jieba" / "jieba.cache").is_file()


def test_one_passage_per_fact_with_its_training_questions_indexed():
    passages = faq_passages(TRAIN_FILE)
    rows = load_chat_jsonl(TRAIN_FILE)
    assert [p.id for p in passages] == list(dict.fromkeys(r.meta["fact_id"] for r in rows))
    first = passages[0]
    assert first.text == rows[0].answer and rows[0].question in first.questions
    assert first.text in first.search_text and all(q in first.search_text for q in first.questions)
    assert faq_passages(TRAIN_FILE, include_questions=False)[0].search_text == first.text


def test_top_k_hit_rate_on_the_held_out_paraphrases(faq):
    rates = hit_rate(faq, load_chat_jsonl(TEST_FILE), ks=(1, 3))
    assert rates["questions"] == 90
    assert rates["top1"] >= TOP1_AT_LEAST and rates["top3"] >= TOP3_AT_LEAST, rates
    assert rates["top3"] >= rates["top1"]
    assert len(rates["misses"]) == round(90 * (1 - rates["top3"]))
    # Without the training questions in the index the answers alone find fewer facts.
    answers_only = Retriever.build(faq_passages(TRAIN_FILE, include_questions=False))
    assert hit_rate(answers_only, load_chat_jsonl(TEST_FILE), ks=(3,))["top3"] < rates["top3"]


def test_search_ranks_the_right_fact_first_and_never_returns_more_than_exist(faq):
    assert faq.search("签收后几天内能无理由退货？")[0].id == "F01"
    assert len(faq.search("退货", k=3)) == 3
    tiny = Retriever.build([Passage("a", "甲", "退货"), Passage("b", "乙", "发票")], k=5)
    assert [p.id for p in tiny.search("发票怎么开")] == ["b", "a"]
    assert len(tiny.search("吗？")) == 2 and len(tiny.search("天气")) == 2  # no known word: still an answer


def test_augmented_messages_put_the_passages_in_the_system_message(faq):
    messages = [{"role": "system", "content": "你是客服。"}, {"role": "user", "content": "退货运费谁出？"}]
    augmented, ids = faq(messages)
    assert len(ids) == 3 and augmented[1:] == messages[1:]
    system = augmented[0]["content"]
    assert system.startswith("你是客服。") and CONTEXT_HEADER in system
    for number, pid in enumerate(ids, 1):
        text = next(p.text for p in faq.passages if p.id == pid)
        assert f"[{number}] {text}" in system
    assert messages[0]["content"] == "你是客服。"  # the case itself is left as it was
    bare = augment_messages([{"role": "user", "content": "你好"}], faq.passages[:1])
    assert bare[0]["role"] == "system" and bare[1] == {"role": "user", "content": "你好"}


def test_a_follow_up_is_searched_with_the_turns_before_it(faq):
    turns = [{"role": "user", "content": "智能门锁保修多久？"}, {"role": "assistant", "content": "整机2年。"},
             {"role": "user", "content": "那锁体呢？"}]
    assert query_of(turns) == "智能门锁保修多久？\n那锁体呢？"
    assert "F08" in [p.id for p in faq.search(query_of(turns))]


def test_an_empty_source_or_a_bad_k_is_a_course_error(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(CourseError):
        faq_passages(empty)
    with pytest.raises(CourseError, match="知识库是空的"):
        Retriever.build([])
    with pytest.raises(CourseError, match="知识库是空的"):
        Retriever(object(), [])
    with pytest.raises(CourseError, match="k 必须是正整数"):
        Retriever.build(faq_passages(TRAIN_FILE), k=0)
    unjudged = hit_rate(Retriever.build(faq_passages(TRAIN_FILE)), [])  # intent rows: nothing to judge by
    assert unjudged["questions"] == 0 and unjudged["top1"] is None and "fact_id" in unjudged["note"]


def test_rows_without_fact_ids_are_one_passage_each(tmp_path):
    rows = [{"id": f"r{n}", "label": label, "messages": [{"role": "user", "content": q},
                                                         {"role": "assistant", "content": label}]}
            for n, (q, label) in enumerate([("我要退货", "退货"), ("发票开错了", "发票")])]
    path = tmp_path / "intent.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    passages = faq_passages(path)
    assert [p.id for p in passages] == ["r0", "r1"] and passages[1].text == "发票开错了 → 发票"


def _fake_table(shares: dict[str, list[float]], tokens: dict[str, int]):
    rows = [{"model": arm, "engine": "transformers", "case_id": f"c{i}", "kind": "faq", "auto_score": s,
             "latency_s": 1.0 + (arm.endswith("+rag")), "prompt_tokens": tokens[arm], "output_tokens": 20}
            for arm, scores in shares.items() for i, s in enumerate(scores)]
    return pd.DataFrame(rows)


def test_the_arms_table_and_its_findings_follow_the_numbers():
    from llmcourse.evaluation.arms import ARMS, arms_findings, arms_table
    cases = [{"case_id": f"c{i}", "key_facts": ["x"]} for i in range(4)]
    tokens = {"base": 40, "base+rag": 160, "fine_tuned": 40, "fine_tuned+rag": 160}
    table = _fake_table({"base": [0, 0, 0, 0], "base+rag": [0, 0.5, 0, 0], "fine_tuned": [1, 1, 0, 0],
                         "fine_tuned+rag": [1, 1, 1, 0.5]}, tokens)
    summary = arms_table(table, cases)
    assert list(summary.arm) == list(ARMS)
    assert summary.set_index("arm").fully_correct.to_dict() == {"base": 0, "base+rag": 0, "fine_tuned": 2,
                                                                "fine_tuned+rag": 3}
    assert summary.set_index("arm").keyfact_score["fine_tuned+rag"] == 0.875
    findings = "\n".join(arms_findings(summary))
    assert "事实最准的是 **微调模型 + 检索**：3/4" in findings and "75.0%" in findings
    assert "微调比单独检索带来的更多" in findings and "两者叠加最好" in findings
    assert "40 个 token 变成 160 个（4.0 倍）" in findings
    # The other way round: retrieval alone wins, and retrieval hurts the fine-tuned model.
    flipped = _fake_table({"base": [0, 0, 0, 0], "base+rag": [1, 1, 1, 0], "fine_tuned": [1, 0, 0, 0],
                           "fine_tuned+rag": [0, 0, 0, 0]}, tokens)
    findings = "\n".join(arms_findings(arms_table(flipped, cases)))
    assert "事实最准的是 **原始模型 + 检索**" in findings and "单独检索比微调带来的更多" in findings
    assert "反而变差" in findings


def test_the_arms_table_needs_all_four_arms():
    from llmcourse.evaluation.arms import arms_table
    table = _fake_table({"base": [0], "fine_tuned": [1]}, {"base": 1, "fine_tuned": 1})
    with pytest.raises(CourseError, match="base\\+rag"):
        arms_table(table, [{"case_id": "c0", "key_facts": ["x"]}])


@pytest.mark.slow
def test_four_arms_at_ci_size_on_the_stand_in(tmp_path, faq):
    """A 2-step adapter (schema and consistency, not quality): four arms on 4 cases, one benchmark call."""
    from llmcourse.config import load_config
    from llmcourse.evaluation.arms import ARMS, ARMS_CSV, ARMS_MD, arms_table
    from llmcourse.evaluation.benchmark import COLUMNS, run_benchmark
    from llmcourse.evaluation.cases import load_cases
    from llmcourse.evaluation.scoring import auto_score, make_score_sheet, read_answers
    from llmcourse.grading.checks import check_benchmark
    from llmcourse.training.run import train

    run = tmp_path / "run"
    cfg = load_config(CPU_CONFIG, **{"train.max_steps": 2, "data.max_samples": 8, "train.output_dir": str(run),
                                     "infer.max_tokens": 8})
    train(cfg)
    cases = load_cases(ROOT / "day2" / "data" / "default_cases.jsonl")[:4]
    out = tmp_path / "bench"
    table = run_benchmark(cfg, cases, run / "adapter", out, engines=["transformers"], retriever=faq)
    assert list(table.columns) == COLUMNS and len(table) == 4 * 4
    assert list(dict.fromkeys(table.model)) == list(ARMS)
    assert check_benchmark(out, min_cases=4) is not None  # the table agrees with generations.jsonl
    generations = read_answers(out)
    by_key = {(g["model"], g["case_id"]): g for g in generations}
    for case in cases:
        plain, rag = by_key[("base", case["case_id"])], by_key[("base+rag", case["case_id"])]
        assert "retrieved" not in plain and len(rag["retrieved"]) == 3
        assert rag["prompt_tokens"] > plain["prompt_tokens"] + 30  # three passages in the prompt
        assert by_key[("fine_tuned+rag", case["case_id"])]["retrieved"] == rag["retrieved"]
    saved = pd.read_csv(out / ARMS_CSV)
    summary = arms_table(table, cases)
    pd.testing.assert_frame_equal(saved, summary, check_dtype=False)
    for row in summary.itertuples():  # recomputed from the generations, not from the table
        answers = [g for g in generations if g["model"] == row.arm]
        correct = sum(auto_score(c, by_key[(row.arm, c["case_id"])]["text"]) == 1 for c in cases)
        assert row.fully_correct == correct and row.cases == len(answers) == 4
        assert row.prompt_tokens == pytest.approx(sum(g["prompt_tokens"] for g in answers) / 4, abs=0.05)
    rows = [line for line in (out / ARMS_MD).read_text(encoding="utf-8").splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + len(ARMS)  # the header and one row per arm
    sheet = make_score_sheet(generations, cases[:2])
    assert len(sheet) == 2 * 4 and {v["model"] for v in sheet.attrs["key"].values()} == set(ARMS)
