import pandas as pd
import pytest

from llmcourse.scoring import auto_score, char_f1, make_score_sheet, rouge_l, save_score_sheet


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


def test_score_sheet_round_trip_and_bad_scores(tmp_path):
    sheet = make_score_sheet([{"case_id": "c1", "model": "base", "text": "答"},
                              {"case_id": "c1", "model": "fine_tuned", "text": "7天"}])
    sheet["human_score"] = [1, 5]
    path = save_score_sheet(sheet, tmp_path / "scores.csv")
    assert list(pd.read_csv(path, encoding="utf-8-sig").human_score) == [1, 5]
    sheet["human_score"] = [0, 6]
    with pytest.raises(ValueError, match="1–5"):
        save_score_sheet(sheet, tmp_path / "bad.csv")
