"""Weights from grading/rubric.yaml and Day 3's dimension evidence (llmcourse.grading.rubric)."""
import shutil

import pytest
from conftest import ROOT
from llmcourse.grading.cohort import chat_rows, write_day3_project, write_jsonl, write_run
from llmcourse.grading.rubric import (
    RubricError,
    assignment_percent,
    collect_evidence,
    course_total,
    data_evidence,
    deployment_evidence,
    dimension_scores,
    fine_tuning_evidence,
    load_rubric,
    track_scores,
)


def _score(evidence):
    checks = evidence["checks"]
    return sum(c["earned"] for c in checks) / sum(c["points"] for c in checks)


def test_the_course_rubric_has_the_seed_weights():
    rubric = load_rubric()
    day3 = rubric.assignments["day3"].dimensions
    assert {name: d.weight for name, d in day3.items()} == {
        "data": 0.20, "fine_tuning": 0.25, "improvement": 0.25, "deployment": 0.20, "summary": 0.10}
    assert day3["summary"].manual is not None and day3["improvement"].evidence == "improvement"
    assert not rubric.assignments["day1"].dimensions and not rubric.assignments["day2"].dimensions
    assert set(rubric.assignments["day1"].tracks) == set(rubric.assignments["day2"].tracks) == {"code", "no_code"}
    assert sum(a.weight for a in rubric.assignments.values()) == pytest.approx(1.0)
    heldout = rubric.settings("day3", "improvement")["heldout"]["faq"]
    assert (ROOT / "grading" / heldout).is_file()


def test_the_manual_cell_exists_in_the_day3_notebook():
    from conftest import grade_ids
    manual = load_rubric().assignments["day3"].dimensions["summary"].manual
    assert manual.grade_id in grade_ids(ROOT / "day3" / f"{manual.notebook}.ipynb")


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: r["assignments"]["day1"].update(weight=0.9), "assignments 的权重之和必须是 1"),
    (lambda r: r["assignments"]["day3"]["dimensions"]["data"].update(weight=0.5), "dimensions 的权重之和必须是 1"),
    (lambda r: r["assignments"]["day3"]["dimensions"]["data"].update(manual={"notebook": "a", "grade_id": "b"}),
     "evidence 或 manual"),
    (lambda r: r["assignments"]["day3"]["dimensions"]["data"].update(evidence="vibes"), "dimensions.data.evidence"),
    (lambda r: r["assignments"]["day1"]["tracks"].update(no_code=["02_lora_training"]), "出现在多个组里"),
    (lambda r: r["assignments"]["day1"].pop("common_weight"), "common_weight"),
    (lambda r: r["assignments"]["day1"].update(common_weight=1.5), "day1.common_weight"),
    (lambda r: r["assignments"]["day2"]["tracks"].update(code=[]), "没有列出任何笔记本"),
    (lambda r: r["assignments"]["day3"].update(tracks={"code": ["01_data"]}), "dimensions 和 tracks"),
])
def test_bad_rubrics_are_refused_with_the_field(tmp_path, change, message):
    import yaml
    raw = yaml.safe_load((ROOT / "grading" / "rubric.yaml").read_text(encoding="utf-8"))
    change(raw)
    (tmp_path / "rubric.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(RubricError, match=message):
        load_rubric(tmp_path / "rubric.yaml")


@pytest.mark.parametrize("day", ["day1", "day2"])
def test_every_notebook_of_day1_and_day2_is_in_exactly_one_group(day):
    spec = load_rubric().assignments[day]
    groups = [spec.common, *spec.tracks.values()]
    assert sorted(n for group in groups for n in group) == sorted(p.stem for p in (ROOT / day).glob("*.ipynb"))


def test_tracks_score_the_better_one_on_top_of_the_common_part():
    rubric = load_rubric()
    full = {"01_concepts": (13, 13), "02_lora_training": (13, 13), "03_no_code": (10, 10)}
    code_only = {**full, "03_no_code": (0, 10)}
    no_code_only = {**full, "02_lora_training": (0, 13)}
    assert track_scores(rubric, "day1", code_only)["percent"] == pytest.approx(100.0)
    assert track_scores(rubric, "day1", code_only)["track"] == "code"
    assert track_scores(rubric, "day1", no_code_only) == {
        "percent": pytest.approx(100.0), "common": pytest.approx(100.0),
        "tracks": {"code": 0.0, "no_code": pytest.approx(100.0)}, "track": "no_code"}
    mixed = {"01_concepts": (6.5, 13), "02_lora_training": (13, 13), "03_no_code": (7, 10)}
    assert track_scores(rubric, "day1", mixed)["percent"] == pytest.approx(0.5 * 50 + 0.5 * 100)
    nothing = {"01_concepts": (0, 13), "02_lora_training": (0, 13), "03_no_code": (0, 10)}
    assert track_scores(rubric, "day1", nothing) == {"percent": 0.0, "common": 0.0,
                                                     "tracks": {"code": 0.0, "no_code": 0.0}, "track": ""}
    # A course without the no-code notebook (the synthetic cohort): the code track alone; an unlisted notebook is common.
    partial = {"01_concepts": (13, 13), "02_lora_training": (0, 13), "99_extra": (0, 13)}
    assert track_scores(rubric, "day1", partial) == {"percent": pytest.approx(25.0), "common": pytest.approx(50.0),
                                                     "tracks": {"code": 0.0, "no_code": None}, "track": ""}


def test_scores_weights_and_totals():
    rubric = load_rubric()
    evidence = {"data": {"checks": [{"name": "a", "earned": 1, "points": 2, "detail": ""}]},
                "fine_tuning": {"checks": [{"name": "b", "earned": 1, "points": 1, "detail": ""}],
                                "fabricated": ["日志到了第 60 步"]},
                "improvement": {"checks": [{"name": "c", "earned": 0, "points": 0, "detail": "未评"}]},
                "deployment": {"checks": [{"name": "d", "earned": 3, "points": 4, "detail": ""}]}}
    scores = dimension_scores(rubric, "day3", evidence, manual={"summary": None})
    assert scores == {"data": 0.5, "fine_tuning": 0.0, "improvement": None, "deployment": 0.75, "summary": None}
    assert assignment_percent(rubric, "day3", scores) == pytest.approx(100 * (0.2 * 0.5 + 0.2 * 0.75))
    assert course_total(rubric, {"day1": 80.0, "day2": 60.0, "day3": 50.0}) == pytest.approx(0.25 * 80 + 0.25 * 60 + 0.5 * 50)
    assert course_total(rubric, {"day1": 80.0}) == pytest.approx(80.0)  # only what is released so far


def test_a_complete_project_scores_full_marks_without_model_runs(tmp_path):
    folder = write_day3_project(tmp_path / "alice")
    evidence = collect_evidence(load_rubric(), "day3", folder, run_models=False)
    scores = dimension_scores(load_rubric(), "day3", evidence, manual={"summary": 0.5})
    assert scores == {"data": 1.0, "fine_tuning": 1.0, "improvement": None, "deployment": 1.0, "summary": 0.5}
    assert all(c["points"] == 0 for c in evidence["improvement"]["checks"])


@pytest.mark.parametrize("scenario", ["intent", "domain_qa"])
def test_a_scenario_project_is_graded_in_its_configs_folders(tmp_path, scenario):
    """A learner on configs/intent.yaml builds into data/built/intent and trains into train/run_intent."""
    import shutil

    from llmcourse.grading.rubric import project_paths

    folder = write_day3_project(tmp_path / "carol")
    (folder / "configs").mkdir()
    shutil.copy(ROOT / "day3" / "configs" / f"{scenario}.yaml", folder / "configs")
    (folder / "data" / "built").rename(tmp_path / "built")
    (folder / "data" / "built").mkdir()
    (tmp_path / "built").rename(folder / "data" / "built" / scenario)
    (folder / "train" / "run").rename(folder / "train" / f"run_{scenario}")
    assert project_paths(folder) == ((folder / "data" / "built" / scenario).resolve(),
                                     (folder / "train" / f"run_{scenario}").resolve())
    evidence = collect_evidence(load_rubric(), "day3", folder, run_models=False)
    scores = dimension_scores(load_rubric(), "day3", evidence, manual={"summary": 0.5})
    assert scores["data"] == 1.0 and scores["fine_tuning"] == 1.0, evidence


def test_data_evidence_finds_leakage_missing_rejects_and_small_splits(tmp_path):
    folder = write_day3_project(tmp_path / "bob")
    built = folder / "data" / "built"
    write_jsonl(built / "test.jsonl", chat_rows("训练", 3) + chat_rows("测试", 2, facts=False))
    (built / "rejected.jsonl").unlink()
    checks = {c["name"]: c for c in data_evidence(folder, {"min_test": 10})["checks"]}
    assert checks["no_leakage"]["earned"] == 0 and "3 个问题" in checks["no_leakage"]["detail"]
    assert checks["rejected_logged"]["earned"] == 0 and checks["sizes"]["earned"] == 0
    assert checks["test_labelled"]["earned"] == pytest.approx(0.6)
    (built / "val.jsonl").write_text('{"messages": []}\n', encoding="utf-8")
    checks = {c["name"]: c for c in data_evidence(folder, {})["checks"]}
    assert checks["splits_load"]["earned"] == pytest.approx(2 * 2 / 3, abs=1e-3) and "val.jsonl" in checks["splits_load"]["detail"]


def test_fine_tuning_evidence_zeroes_a_fabricated_run(tmp_path):
    folder = write_day3_project(tmp_path / "carol")
    shutil.rmtree(folder / "train" / "run")
    write_run(folder / "train" / "run", steps=60, max_steps=8)
    evidence = fine_tuning_evidence(folder, {})
    assert evidence["fabricated"] and dimension_scores(load_rubric(), "day3", {"fine_tuning": evidence})["fine_tuning"] == 0
    shutil.rmtree(folder / "train" / "run" / "adapter")
    checks = {c["name"]: c for c in fine_tuning_evidence(folder, {})["checks"]}
    assert checks["adapter"]["earned"] == 0 and "adapter" in checks["artifacts"]["detail"]


def test_deployment_evidence_needs_a_client_results_and_load_test(tmp_path):
    folder = write_day3_project(tmp_path / "dan")
    template = tmp_path / "README.template.md"
    template.write_text("<!-- results:start -->\n（运行后这里会出现结果）\n<!-- results:end -->\n", encoding="utf-8")
    assert _score(deployment_evidence(folder, {}, template, run_api=False)) == 1.0
    shutil.copy(template, folder / "README.md")
    (folder / "deploy" / "client.py").write_text("import requests\n", encoding="utf-8")
    (folder / "deploy" / "loadtest" / "loadtest.json").unlink()
    assert _score(deployment_evidence(folder, {}, template, run_api=False)) == 0.0


@pytest.fixture(scope="module")
def trained_project(tmp_path_factory):
    """A project whose adapter is a real PEFT adapter for the stand-in (lora_B nudged away from zero)."""
    import torch
    from llmcourse.config import load_config
    from llmcourse.training.run import lora_config
    from llmcourse.env.loading import resolve_model_path, use_course_template
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = write_day3_project(tmp_path_factory.mktemp("day3") / "erin")
    run = folder / "train" / "run"
    cfg = load_config(run / "config.yaml")
    model = AutoModelForCausalLM.from_pretrained(resolve_model_path(cfg))
    peft_model = get_peft_model(model, lora_config(cfg))
    torch.manual_seed(0)
    for name, parameter in peft_model.named_parameters():
        if "lora_B" in name:
            parameter.data.normal_(0, 1e-4)
    peft_model.save_pretrained(run / "adapter")
    use_course_template(AutoTokenizer.from_pretrained(resolve_model_path(cfg)), cfg).save_pretrained(run / "adapter")
    return folder


@pytest.mark.slow
def test_improvement_is_measured_by_the_grader_on_the_heldout_set(trained_project, tmp_path, monkeypatch):
    from llmcourse.grading import rubric as rubric_module

    settings = {"heldout": {"faq": "day3_faq_test.jsonl"}, "max_questions": 3, "max_tokens": 16, "target_gain": 0.3}
    shutil.copy(ROOT / "grading" / "heldout" / "day3_faq_test.jsonl", tmp_path / "day3_faq_test.jsonl")
    evidence = rubric_module.improvement_evidence(trained_project, settings, tmp_path, cache_dir=tmp_path / "cache")
    numbers = evidence["numbers"]
    assert numbers["questions"] == 3 and numbers["metric"] == "keyfact_hit_rate"
    assert 0 <= numbers["base"] <= 1 and 0 <= numbers["fine_tuned"] <= 1
    assert evidence["checks"][0]["points"] == 3 and "day3_faq_test.jsonl" in evidence["checks"][0]["detail"]
    calls = []
    real = rubric_module._generate
    monkeypatch.setattr(rubric_module, "_generate", lambda cfg, adapter, rows: calls.append(adapter) or real(cfg, adapter, rows))
    again = rubric_module.improvement_evidence(trained_project, settings, tmp_path, cache_dir=tmp_path / "cache")
    assert calls == [trained_project / "train" / "run" / "adapter"]  # the base model's answers came from the cache
    assert again["numbers"]["base"] == numbers["base"]


@pytest.mark.slow
def test_deployment_evidence_holds_a_multi_turn_chat_with_the_learners_api(trained_project):
    settings = {"turns": ["日用品多少天内可以退？", "那生鲜呢？"], "max_tokens": 8, "start_timeout_s": 300}
    evidence = deployment_evidence(trained_project, settings, None, run_api=True)
    api = next(c for c in evidence["checks"] if c["name"] == "api_multi_turn")
    assert api["points"] == 2 and api["earned"] == 2, api["detail"]
    assert [t["messages_sent"] for t in evidence["transcript"]] == [1, 3]


def test_readme_sections_must_be_filled_where_the_template_has_them(tmp_path):
    folder = write_day3_project(tmp_path / "fay")
    template = tmp_path / "README.template.md"
    blank = "".join(f"<!-- {name}:start -->\n（运行后这里会出现{name}）\n<!-- {name}:end -->\n"
                    for name in ("env", "launch", "showcase", "results"))
    template.write_text(blank, encoding="utf-8")
    checks = {c["name"]: c for c in deployment_evidence(folder, {}, template, run_api=False)["checks"]}
    assert checks["readme_sections"]["earned"] == 1 and checks["readme_results"]["earned"] == 1
    readme = folder / "README.md"  # 启动方式 left as the template, 效果展示 markers deleted
    readme.write_text(blank.replace("（运行后这里会出现env）", "训练设备 cpu").replace("（运行后这里会出现results）", "0.8")
                      .replace("<!-- showcase:start -->", ""), encoding="utf-8")
    checks = {c["name"]: c for c in deployment_evidence(folder, {}, template, run_api=False)["checks"]}
    assert checks["readme_sections"]["earned"] == pytest.approx(1 / 3, abs=1e-3)
    assert "启动方式、效果展示" in checks["readme_sections"]["detail"]
    readme.unlink()
    checks = {c["name"]: c for c in deployment_evidence(folder, {}, template, run_api=False)["checks"]}
    assert checks["readme_sections"]["earned"] == 0 and checks["readme_results"]["detail"] == "没有 README.md"
