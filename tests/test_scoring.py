import json
import re

import nbformat
import pandas as pd
import pytest

from conftest import ROOT
from llmcourse.evaluation.cases import load_cases
from llmcourse.grading.checks import CheckFailed, check_human_scores
from llmcourse.grading.learner_edition import CODE_STUB, SOLUTION
from llmcourse.evaluation.scoring import (auto_score, char_f1, make_score_sheet, one_per_kind, reveal_scores, rouge_l,
                               save_score_sheet, sheet_html)

DEFAULT_CASES = load_cases(ROOT / "day2" / "data" / "default_cases.jsonl")
MY_CASES = [{"case_id": f"mine-{i}", "kind": "faq", "key_facts": [f"{i}0元"],
             "messages": [{"role": "user", "content": f"第 {i} 个问题要多少钱？"}]} for i in range(1, 6)]


def test_char_measures():
    assert char_f1("签收后7天内可退货", "签收后7天内可退货") == 1.0
    assert char_f1("完全无关", "签收后7天") == 0.0
    assert rouge_l("7天内退货", "签收后7天内可退货") == pytest.approx(2 * (5 / 5) * (5 / 9) / (1 + 5 / 9), abs=1e-3)
    assert rouge_l("", "参考") == 0.0
    assert rouge_l("货退内天7", "7天内退货") < rouge_l("7天内退货", "7天内退货")  # order matters


def test_auto_score_picks_the_measure_the_case_provides():
    assert auto_score({"key_facts": ["7天", "原路退回"]}, "7天内退款") == 0.5
    assert auto_score({"label": "退换货"}, "类别：退换货") == 1.0
    assert auto_score({"label": "退换货"}, "类别：保修") == 0.0
    assert auto_score({"reference": "抱歉，我只回答产品问题"}, "抱歉，我只回答产品问题") == 1.0


def answers_for(cases):
    """What a benchmark run saves: the fine-tuned model says the key facts, the base one repeats the question."""
    return [{"case_id": c["case_id"], "model": model, "engine": "transformers", "question": c["messages"][-1]["content"],
             "text": "答：" + "，".join(c.get("key_facts") or ["抱歉"]) if model == "fine_tuned"
             else c["messages"][-1]["content"] + "？"} for c in cases for model in ("base", "fine_tuned")]


def write_run(folder, cases):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "generations.jsonl").write_text("".join(json.dumps(a, ensure_ascii=False) + "\n"
                                                      for a in answers_for(cases)), encoding="utf-8")


def model_of(row, cases):
    """Which model wrote this row's answer, read off the answer itself (see answers_for)."""
    return next(a["model"] for a in answers_for(cases) if a["case_id"] == row.case_id and a["text"] == row.answer)


def test_the_sheet_is_shuffled_the_same_way_for_the_same_seed():
    cases = DEFAULT_CASES[:10]
    sheet = make_score_sheet(answers_for(cases), cases, seed=42)
    again = make_score_sheet(answers_for(cases)[::-1], cases[::-1], seed=42)  # input order does not matter
    other = make_score_sheet(answers_for(cases), cases, seed=7)
    order = list(dict.fromkeys(sheet.case_id))
    assert sheet[["case_id", "answer_label", "answer"]].equals(again[["case_id", "answer_label", "answer"]])
    assert order != [c["case_id"] for c in cases] and order != list(dict.fromkeys(other.case_id))
    assert list(sheet.row) == list(range(1, 21)) and set(sheet.answer_label) == {"回答 A", "回答 B"}
    first = sheet.iloc[0]
    case = next(c for c in cases if c["case_id"] == first.case_id)
    assert first.question == case["messages"][-1]["content"] and first.reference == case["reference"]
    assert first.key_facts == case["key_facts"]


def test_model_names_are_hidden_until_every_row_is_scored(tmp_path, capsys):
    cases = DEFAULT_CASES[:10]
    sheet = make_score_sheet(answers_for(cases), cases, seed=42)
    assert not {"model", "engine"} & set(sheet.columns)
    html = sheet_html(sheet)
    assert "base" not in html and "fine_tuned" not in html and html.count("回答 A") == 10
    letters = [sheet.attrs["key"][a]["model"] for a in sheet.answer_id[sheet.answer_label == "回答 A"]]
    assert letters.count("base") == letters.count("fine_tuned") == 5  # A is no hint
    path = save_score_sheet(sheet, tmp_path / "human_scores.csv", scores=[3] * 19 + [None])
    saved = pd.read_csv(path, encoding="utf-8-sig")
    assert saved.model.isna().all() and saved.human_score.isna().sum() == 1 and "model" not in sheet
    assert "还有 1 行没打分" in capsys.readouterr().out
    assert reveal_scores(path) is None and "没打分" in capsys.readouterr().out


def test_names_and_per_model_means_are_revealed_after_scoring(tmp_path):
    cases = DEFAULT_CASES[:10]
    sheet = make_score_sheet(answers_for(cases), cases, seed=42)
    scores = [5 if model_of(row, cases) == "fine_tuned" else 2 for row in sheet.itertuples()]
    path = save_score_sheet(sheet, tmp_path / "human_scores.csv", scores=scores)
    saved = check_human_scores(path, min_rows=10)
    assert [model_of(row, cases) for row in saved.itertuples()] == list(saved.model) == list(sheet.model)
    assert dict(saved.groupby("model").human_score.mean()) == {"base": 2, "fine_tuned": 5}  # what Day 3's report reads
    means = reveal_scores(path)
    assert means.loc["fine_tuned", "人工分均值"] == 5 and means.loc["base", "打分数"] == 10


def test_bad_scores_are_refused_with_the_row():
    sheet = make_score_sheet([{"case_id": "c1", "model": "base", "text": "答"},
                              {"case_id": "c1", "model": "fine_tuned", "text": "7天"}])
    with pytest.raises(ValueError, match="第 \\[2\\] 行"):
        save_score_sheet(sheet, "/nonexistent/never-written.csv", scores=[1, 6])
    with pytest.raises(ValueError, match="打分表有 2 行，你给了 3 个分数"):
        save_score_sheet(sheet, "/nonexistent/never-written.csv", scores=[1, 2, 3])
    assert [c["kind"] for c in one_per_kind(DEFAULT_CASES)] == ["faq", "out_of_domain", "multi_turn"]


def cell_source(path, grade_id=None, contains=None) -> str:
    cells = nbformat.read(path, as_version=4).cells
    return next(c.source for c in cells if c.cell_type == "code"
                and (c.metadata.get("nbgrader", {}).get("grade_id") == grade_id if grade_id else contains in c.source))


NOTEBOOKS = {"day2": (ROOT / "day2" / "01_inference.ipynb", "runs/benchmark", "runs/benchmark/human_scores.csv"),
             "day3": (ROOT / "day3" / "04_verify.ipynb", "verify", "verify/human_scores.csv")}


@pytest.mark.parametrize("day", NOTEBOOKS)
def test_notebook_skeleton_fails_the_check_and_the_solution_passes(day, tmp_path, monkeypatch):
    notebook, out_dir, saved = NOTEBOOKS[day]
    monkeypatch.chdir(tmp_path)
    cases = DEFAULT_CASES[:6] if day == "day2" else DEFAULT_CASES[:5]
    write_run(tmp_path / out_dir, cases + MY_CASES)
    from pathlib import Path
    scope = {"Path": Path, "out_dir": out_dir, "cases": cases, "my_cases": MY_CASES}
    exec(cell_source(notebook, contains="make_score_sheet("), scope)
    sheet = scope["sheet"]
    if day == "day2":  # the learner's own cases are all on the sheet, with one default case per kind
        assert set(sheet.case_id) == {c["case_id"] for c in MY_CASES} | {"faq-F01"} and len(sheet) == 12
    answer_cell = cell_source(notebook, grade_id="human_scores")
    learner = SOLUTION.sub(CODE_STUB + "\n", answer_cell)
    assert "BEGIN SOLUTION" not in learner and "scores = [None] * len(sheet)" in learner
    exec(learner, scope)  # the untouched skeleton runs ...
    with pytest.raises(CheckFailed, match="没有打分：在打分单元格里把 scores") as failed:
        check_human_scores(saved, min_rows=10)  # ... and fails the check, saying what to fill in
    assert re.search(r"[\u4e00-\u9fff]", str(failed.value))
    exec(answer_cell, scope)
    scored = check_human_scores(saved, min_rows=10)
    means = scored.groupby("model").human_score.mean()
    assert means["fine_tuned"] > means["base"]


LABEL_ANSWERS = [("退货", "这是退货问题。"), ("退货", "这是 退 货。"), ("Refund", "intent: refund!"), ("退货", "换货"),
                 ("order_status", "order status"), ("退货", ""), ("物流", None)]


@pytest.mark.parametrize("label, answer", LABEL_ANSWERS)
def test_learners_and_the_grader_score_a_label_answer_alike(label, answer):
    """One scorer: Day 2's auto_score (the learner's table) and the Day 3 rubric's label accuracy agree."""
    from types import SimpleNamespace

    from llmcourse.evaluation.scoring import auto_score, label_match
    from llmcourse.grading.rubric import answer_metric

    example = SimpleNamespace(key_facts=[], meta={"label": label})
    metric, grader = answer_metric([example], [answer or ""])
    assert metric == "label_accuracy"
    assert auto_score({"label": label}, answer) == grader == float(label_match(label, answer))


def test_a_label_match_ignores_case_spaces_and_punctuation_but_not_the_words():
    from llmcourse.evaluation.scoring import label_match

    assert label_match("order_status", "Order status?") and label_match("退货", "这是 退 货。")
    assert not label_match("退货", "换货") and not label_match("", "任何回答")
