"""The error analysis (llmcourse.evaluation.confusions) on the Day 1 FAQ: no model, hand-written answers."""

import pytest

from llmcourse.artifacts import COURSE_ROOT
from llmcourse.data.jsonl import load_chat_jsonl
from llmcourse.evaluation.confusions import (REASONS, confusion_table, fact_table, find_confusions, reason_counts,
                                             top_pairs, values_in)

TRAIN = COURSE_ROOT / "day1" / "data" / "faq_train.jsonl"
TEST = COURSE_ROOT / "day1" / "data" / "faq_test.jsonl"


@pytest.fixture(scope="module")
def facts():
    return fact_table(load_chat_jsonl(TRAIN))


@pytest.fixture(scope="module")
def test_rows():
    return {row.meta["id"]: row for row in load_chat_jsonl(TEST)}


def test_values_keep_their_units_and_ranges():
    assert values_in("订单满99元包邮，不满99元收取10元运费。") == ["99元", "99元", "10元"]
    assert values_in("服务时间为每天9:00-21:00，3个工作日内") == ["9:00-21:00", "3个工作日"]
    assert values_in("没有数字") == []


def test_every_fact_of_the_faq_is_in_the_table_with_its_training_questions(facts):
    assert len(facts) == 45
    assert all(len(fact.questions) >= 3 for fact in facts.values())
    assert facts["F45"].values == {"10:00-22:00"}


def test_a_value_taken_from_another_fact_names_that_fact(facts, test_rows):
    row = test_rows["F45-q4"]  # opening hours of the shops: 10:00-22:00; the hotline's are 9:00-21:00 (F43)
    [found] = find_confusions([row], ["线下门店营业时间为每天9:00-21:00。"], facts)
    assert (found.reason, found.confused_with, found.shared) == ("shared_value", "F43", ("9:00-21:00",))
    assert found.missing == ("10:00-22:00",)


def test_a_value_no_fact_has_is_invented(facts, test_rows):
    [found] = find_confusions([test_rows["F01-q4"]], ["签收之日起20天内可以退货。"], facts)
    assert found.reason == "invented" and found.confused_with is None and found.shared == ("20天",)


def test_a_right_answer_is_no_confusion_and_a_bare_omission_is_incomplete(facts, test_rows):
    rows = [test_rows["F01-q4"], test_rows["F38-q4"]]
    found = find_confusions(rows, ["签收之日起7天内可申请无理由退货。", "您好，请说唤醒词。"], facts)
    assert [f.case_id for f in found] == ["F38-q4"]
    assert found[0].reason in {"incomplete", "similar_question"}


def test_pairs_are_counted_and_ranked(facts, test_rows):
    rows = [test_rows["F45-q4"], test_rows["F45-q5"], test_rows["F30-q4"]]
    answers = ["每天9:00-21:00营业。", "9:00-21:00。", "购买后10天内可以申请。"]
    found = find_confusions(rows, answers, facts)
    pairs = top_pairs(found)
    assert [(p["事实"], p["被当成"], p["次数"]) for p in pairs] == [("F45", "F43", 2), ("F30", "F06", 1)]
    assert reason_counts(found)[REASONS["shared_value"]] == 3
    table = confusion_table(found)
    assert list(table["次数"]) == [2, 1]


def test_answers_must_match_the_questions_one_to_one(facts, test_rows):
    with pytest.raises(ValueError, match="一一对应"):
        find_confusions([test_rows["F01-q4"]], [], facts)
