"""Day 2's no-code form (llmcourse.notebooks.form_day2) without a model: a stand-in engine answers, the code
track's benchmark code writes the artifacts, and the code track's checks grade them."""
import json

import pytest
from conftest import ROOT
from llmcourse.grading.checks import (
    CheckFailed,
    check_benchmark,
    check_cases,
    check_human_scores,
)
from llmcourse.grading.cohort import write_run
from llmcourse.notebooks.form_day2 import EXAMPLE_CASES, EvaluationForm, split_facts


class FakeEngine:
    """Answers like a model: the fine-tuned one says the key fact, the base one repeats the question."""

    def __init__(self, tuned):
        self.tuned = tuned

    def generate(self, prompts, batch_size=None, progress=False):
        from llmcourse.inference.engines import Generation
        facts = {q: f[0] for q, f in EXAMPLE_CASES}
        texts = [facts.get(p[-1]["content"], "不知道") if self.tuned else p[-1]["content"] for p in prompts]
        return [Generation(text, 20, len(text), 0.5 + i / 10, 0.1, len(text) / 0.5) for i, text in enumerate(texts)]


@pytest.fixture
def folder(tmp_path, monkeypatch):
    from llmcourse.evaluation import benchmark
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "default_cases.jsonl").write_bytes((ROOT / "day2" / "data" / "default_cases.jsonl").read_bytes())
    write_run(tmp_path / "day1run")
    monkeypatch.setattr(benchmark, "load_engine", lambda cfg, adapter, engine=None: FakeEngine(adapter is not None))
    return tmp_path


def form(**kwargs):
    return EvaluationForm(adapter_dir="day1run/adapter", max_cases=3, **kwargs)


def test_facts_split_on_chinese_and_latin_separators():
    assert split_facts("180分钟、 7天，48小时; 3个\n") == ["180分钟", "7天", "48小时", "3个"]


def test_cases_are_checked_saved_in_the_code_tracks_format_and_reloaded(folder):
    first = form()
    assert len(first.case_rows) == 5 and first.save_cases() is None and not first.cases_file.exists()
    first.set_cases([("门锁最多能存几个指纹？", "100个"), ("", "7天"), ("保修多久？", "")])
    first.save_cases()
    assert "第 2 个用例：写了关键事实，但还没有写问题" in first.cases_message.value
    assert "第 3 个用例：请至少写一个关键事实" in first.cases_message.value and "至少需要 5 个" in first.cases_message.value
    with pytest.raises(CheckFailed, match="只有 1 个用例"):
        check_cases(first.cases_file)
    first.set_cases(EXAMPLE_CASES + [("智能音箱支持哪些语音？", "普通话、粤语")])
    first.save_cases()
    cases = check_cases(first.cases_file, min_cases=5)
    assert len(cases) == 6 and cases[5]["key_facts"] == ["普通话", "粤语"]
    assert cases[0]["messages"][0]["role"] == "system" and cases[0]["messages"][-1]["content"] == EXAMPLE_CASES[0][0]
    again = form()
    assert [(q.value, f.value) for q, f in again.case_rows][5] == ("智能音箱支持哪些语音？", "普通话、粤语")
    again.set_cases([("", "")] * 6)
    assert again.save_cases() is None and len(check_cases(again.cases_file)) == 6  # nothing lost


def test_run_scores_and_results_give_the_code_tracks_artifacts(folder):
    evaluation = form()
    assert evaluation.run() is None and "保存用例" in evaluation.run_status.value
    assert evaluation.sheet is None and "还没有可以打分的回答" in evaluation.score_message.value
    evaluation.autofill("cases")
    table = evaluation.run()
    assert table.groupby("model").case_id.nunique().to_dict() == {"base": 8, "fine_tuned": 8}  # 5 own + 3 default
    assert check_benchmark(evaluation.out, min_cases=5) is not None
    assert len(evaluation.score_buttons) == 10 and set(evaluation.sheet.case_id) == {f"mine-{i}" for i in range(1, 6)}
    assert "model" not in evaluation.sheet  # blind: scoring keeps the models out of the sheet
    evaluation.set_scores([3] * 9)
    evaluation.save_scores()
    assert "还有 1 个回答没有打分" in evaluation.score_message.value
    with pytest.raises(CheckFailed, match="没有打分"):
        check_human_scores(evaluation.scores_file, min_rows=10)
    evaluation.autofill("scores")
    sheet = check_human_scores(evaluation.scores_file, min_rows=10)
    assert dict(sheet.groupby("model").human_score.mean()) == {"base": 1.0, "fine_tuned": 5.0}
    assert "揭晓" in evaluation.score_message.value
    evaluation.show_results()
    for name in ("summary.md", "quality.png", "latency.png", "memory.png"):
        assert (evaluation.out / name).is_file(), name
    # Reopened: the saved scores come back; an answer whose text changed loses its score, the others keep theirs.
    generations = evaluation.out / "generations.jsonl"
    rows = [json.loads(line) for line in generations.read_text(encoding="utf-8").splitlines()]
    rows[0]["text"] = "另一个回答"
    generations.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    values = [b.value for b in form().score_buttons]
    assert values.count(None) == 1 and len(values) == 10


def test_under_nbgrader_the_saved_benchmark_is_reused(folder, monkeypatch):
    evaluation = form()
    evaluation.autofill("cases")
    evaluation.run()
    evaluation.show_results()
    stamps = {p: p.stat().st_mtime_ns for p in evaluation.out.iterdir()}
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    from llmcourse.evaluation import benchmark
    monkeypatch.setattr(benchmark, "load_engine", lambda *a, **k: pytest.fail("generated again under nbgrader"))
    (folder / "day1run" / "config.yaml").unlink()  # the Day 1 run need not be there when grading Day 2
    again = form()
    assert len(again.run()) == 16 and len(again.score_buttons) == 10
    again.show_results()
    assert {p: p.stat().st_mtime_ns for p in evaluation.out.iterdir()} == stamps  # nothing written again


def test_a_missing_day1_adapter_is_explained(folder):
    evaluation = EvaluationForm(adapter_dir="nowhere/adapter")
    evaluation.autofill("cases")
    assert evaluation.run() is None and "day1/03_no_code" in evaluation.run_status.value
