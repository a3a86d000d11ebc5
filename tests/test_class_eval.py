"""Day 3's model checks for a class on one vLLM (llmcourse.grading.class_eval) score as the per-learner path does."""
import json
import shutil
import time

import pytest
import yaml
from conftest import ROOT
from llmcourse.grading import class_eval
from llmcourse.grading.class_eval import class_evidence, use_class_server
from llmcourse.grading.cohort import write_day3_project, write_real_adapters
from llmcourse.grading.rubric import collect_evidence, dimension_scores, load_rubric

MODEL_DIMENSIONS = ("improvement", "deployment")


def small_rubric(folder, **class_server):
    """The course rubric with the model checks cut down (3 held-out questions, short answers)."""
    raw = yaml.safe_load((ROOT / "grading" / "rubric.yaml").read_text(encoding="utf-8"))
    evidence = raw["assignments"]["day3"]["evidence"]
    evidence["improvement"].update(max_questions=3, max_tokens=16)
    evidence["deployment"].update(max_tokens=8)
    evidence["class_server"].update(class_server)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "heldout").mkdir(exist_ok=True)
    shutil.copy(ROOT / "grading" / "heldout" / "day3_faq_test.jsonl", folder / "heldout" / "day3_faq_test.jsonl")
    (folder / "rubric.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return load_rubric(folder / "rubric.yaml")


def scores(rubric, evidence):
    return {name: value for name, value in dimension_scores(rubric, "day3", evidence).items() if name in MODEL_DIMENSIONS}


def test_the_class_server_is_used_only_where_enabled_and_vllm_is_here(tmp_path, monkeypatch):
    rubric = small_rubric(tmp_path / "on")
    monkeypatch.setattr("llmcourse.env.vllm_lane.vllm_python", lambda: "/usr/bin/python-with-vllm")
    assert use_class_server(rubric, "day3") and not use_class_server(rubric, "day3", "off")
    assert not use_class_server(rubric, "day1")  # no model dimensions
    assert not use_class_server(small_rubric(tmp_path / "off", enabled=False), "day3")
    monkeypatch.setattr("llmcourse.env.vllm_lane.vllm_python", lambda: None)
    assert not use_class_server(rubric, "day3")  # the per-learner path is the fallback


def test_a_learner_without_a_usable_config_gets_the_per_learner_findings_without_a_server(tmp_path, monkeypatch):
    rubric = small_rubric(tmp_path / "rubric")
    folder = write_day3_project(tmp_path / "gus")
    (folder / "train" / "run" / "config.yaml").write_text("model: {name: 没有这个模型}\n", encoding="utf-8")

    def no_server(*args, **kwargs):
        raise AssertionError("no server may start for a learner whose config does not load")
    monkeypatch.setattr(class_eval, "ClassServer", no_server)
    found = class_evidence(rubric, "day3", {"gus": folder}, cache_dir=tmp_path / "cache")
    alone = collect_evidence(rubric, "day3", folder, tmp_path / "cache", kinds={"improvement", "deployment"})
    assert scores(rubric, found["gus"]) == scores(rubric, alone)
    assert scores(rubric, alone)["improvement"] == 0.0
    api = next(c for c in found["gus"]["deployment"]["checks"] if c["name"] == "api_multi_turn")
    assert api["earned"] == 0 and "没有这个模型" in api["detail"]


def test_an_adapter_of_other_shapes_is_named_a_mismatch_before_any_engine_gets_it(tmp_path):
    from llmcourse.grading.rubric import adapter_mismatch, grading_config

    folder = write_day3_project(tmp_path / "hal")  # write_run's adapter: 8-wide, the stand-in is 640-wide
    cfg = grading_config(folder)
    problem = adapter_mismatch(cfg, folder / "train" / "run" / "adapter")
    assert problem and "形状不符" in problem and "gemma3-270m" in problem


def test_the_class_pass_merges_the_model_dimensions_into_each_learners_evidence(tmp_path, monkeypatch):
    from llmcourse.grading.workflow import Course

    course = Course(tmp_path / "course")
    for student in ("ivy", "jon"):
        course.submitted_dir(student, "day3").mkdir(parents=True)
    course.records_dir("day3", "ivy").mkdir(parents=True)  # jon's worker timed out: no evidence.json
    (course.records_dir("day3", "ivy") / "evidence.json").write_text(
        json.dumps({"data": {"checks": []}, "improvement": {"checks": ["skipped"]}}), encoding="utf-8")
    asked = {}

    def fake(rubric, assignment, folders, **kwargs):
        asked.update(folders)
        return {s: {"improvement": {"checks": ["re-evaluated"]}, "deployment": {"checks": ["chat"]}} for s in folders}
    monkeypatch.setattr(class_eval, "class_evidence", fake)
    class_eval.grade_class(course, "day3", ["ivy", "jon"], rubric=load_rubric())
    assert list(asked) == ["ivy"]
    merged = json.loads((course.records_dir("day3", "ivy") / "evidence.json").read_text(encoding="utf-8"))
    assert merged == {"data": {"checks": []}, "improvement": {"checks": ["re-evaluated"]}, "deployment": {"checks": ["chat"]}}
    assert not (course.records_dir("day3", "jon") / "evidence.json").exists()


@pytest.fixture(scope="module")
def day3_class(tmp_path_factory):
    """Two learners with real, different adapters of the stand-in, and one whose adapter is not the stand-in's
    (a fourth real learner added about 80 s to CI and no case the two do not cover)."""
    root = tmp_path_factory.mktemp("class")
    folders = {name: write_day3_project(root / name) for name in ("ann", "dora", "ben")}
    write_real_adapters({folders["ann"] / "train" / "run": 0.0, folders["ben"] / "train" / "run": 0.01})
    return root, folders  # dora keeps write_run's synthetic adapter: its shapes fit no real model


@pytest.mark.slow
def test_the_class_path_scores_every_learner_as_the_per_learner_path_does(day3_class, tmp_path):
    _, folders = day3_class
    rubric = small_rubric(tmp_path / "rubric")
    started = time.monotonic()
    alone = {s: collect_evidence(rubric, "day3", f, tmp_path / "cache_alone", kinds=set(MODEL_DIMENSIONS))
             for s, f in folders.items()}
    alone_s = time.monotonic() - started
    started = time.monotonic()
    seen = []
    together = class_evidence(rubric, "day3", folders, tmp_path / "cache_class", tmp_path / "logs",
                              progress=lambda student, seconds: seen.append(student))
    class_s = time.monotonic() - started
    print(f"\nper learner {alone_s:.1f} s, class server {class_s:.1f} s for {len(folders)} learners")
    assert seen == list(folders)
    for student in folders:
        print(student, scores(rubric, alone[student]), scores(rubric, together[student]))
        assert scores(rubric, together[student]) == scores(rubric, alone[student]), student
    for student in ("ann", "ben"):
        mine, theirs = together[student]["improvement"]["numbers"], alone[student]["improvement"]["numbers"]
        assert mine["examples"] == theirs["examples"], student      # the same greedy answers, word for word
        assert together[student]["deployment"]["transcript"] == alone[student]["deployment"]["transcript"], student
        api = next(c for c in together[student]["deployment"]["checks"] if c["name"] == "api_multi_turn")
        assert api["earned"] == 2, api["detail"]
    # The adapters differ, and so do their answers: the server asked each learner's own adapter.
    assert len({json.dumps(together[s]["improvement"]["numbers"]["examples"], ensure_ascii=False)
                for s in ("ann", "ben")}) == 2
    # Dora's adapter is a finding of her own in both dimensions; Ben, after her, was still graded.
    broken = together["dora"]
    assert broken["improvement"]["checks"][0]["earned"] == 0 and "形状不符" in broken["improvement"]["checks"][0]["detail"]
    api = next(c for c in broken["deployment"]["checks"] if c["name"] == "api_multi_turn")
    assert api["earned"] == 0 and "形状不符" in api["detail"]
