"""`llmcourse data build`: the malformed raw corpus, the three shipped Day 3 scenarios, the split, leakage,
the instructor's held-out set, the CLI and property tests (garbage rows never crash a build)."""
import hashlib
import json
import tempfile
from pathlib import Path

import pytest
from conftest import ROOT, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st
from llmcourse.config import ConfigError, build_config, load_config
from llmcourse.data.jsonl import DataError, load_chat_jsonl
from llmcourse.data.build import (
    Example,
    _check_leakage,
    _Rejections,
    build_dataset,
    build_dataset_from_config,
    clean_text,
    question_similarity,
)
from llmcourse.data.report import load_rejected, render_markdown, show_report
from llmcourse.data.pii import find_pii
from llmcourse.data.raw import RawRecord, read_source

MALFORMED_RAW = Path(__file__).parent / "data" / "malformed_raw"
DAY3 = ROOT / "day3"
SCENARIOS = {"faq": DAY3 / "config.yaml", "intent": DAY3 / "configs" / "intent.yaml",
             "domain_qa": DAY3 / "configs" / "domain_qa.yaml"}
HELDOUT = ROOT / "grading" / "heldout" / "day3_faq_test.jsonl"
ROWS_SOURCE = {"path": "rows.csv", "kind": "csv", "question_column": "问题", "answer_column": "答案",
               "key_facts_column": "关键信息", "fact_column": "知识点"}
# rows.csv line -> reason it is dropped for (lines not listed must be kept)
ROWS_EXPECTED = {3: "bad_columns", 4: "encoding", 5: "empty", 6: "empty", 7: "missing_question", 8: "too_short",
                 9: "too_long", 13: "missing_answer", 14: "key_fact_not_in_answer", 15: "missing_key_facts",
                 16: "unknown_fact", 17: "duplicate", 19: "near_duplicate", 20: "conflict", 21: "conflict",
                 24: "bad_columns"}
ROWS_KEPT = {2, 10, 12, 18, 22, 23}


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _into(out: Path) -> dict[str, str]:
    """Overrides that send every output of a build into ``out``."""
    return {"data.built_dir": str(out), "data.train_file": str(out / "train.jsonl"),
            "data.eval_file": str(out / "val.jsonl"), "data.test_file": str(out / "test.jsonl")}


def _corpus_config(out: Path, sources: list[dict], **data):
    raw = {"data": {"scenario": "domain_qa", "raw_dir": str(MALFORMED_RAW), "sources": sources, **data}}
    return build_config(raw, _into(out))


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --- cleaning and similarity -------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, clean", [
    ("<p>退款&nbsp;多久<br>到账？</p>", "退款多久到账？"),
    ("您好&nbsp;请问 <b>自提</b> 要等多久", "您好请问自提要等多久"),
    ("价格<100 元吗", "价格<100元吗"),  # "<" that opens no tag stays
    ("零宽\u200b字符\ufeff", "零宽字符"),
    ("到了吗？？？！！", "到了吗？！"),
    ("XN-5 的电池", "XN-5的电池"),
    ("  ", ""),
    (None, ""),
])
def test_clean_text(raw, clean):
    assert clean_text(raw) == clean


def test_similarity_ignores_case_spaces_and_punctuation():
    assert question_similarity("退货要几天？", "退货 要几天") == 1.0
    assert question_similarity("ABC", "abc") == 1.0
    assert 0.85 <= question_similarity("换货要几天", "换货要几天呀") < 1.0
    assert question_similarity("退货要几天", "会员多少钱") < 0.3


# --- the malformed raw corpus ------------------------------------------------------------------------------------

def test_malformed_rows_are_rejected_with_line_and_reason_and_raw_files_stay(tmp_path):
    before = _digests(MALFORMED_RAW)
    cfg = _corpus_config(tmp_path, [ROWS_SOURCE, {"path": "sections.md", "kind": "markdown"}])
    report = build_dataset_from_config(cfg)
    rejected = load_rejected(report)
    by_line = {row["line"]: row["reason"] for row in rejected if row["source"] == "rows.csv"}
    assert by_line == ROWS_EXPECTED
    kept = {json.loads(line)["id"] for name in ("train", "val", "test")
            for line in (tmp_path / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()}
    assert kept == {f"rows.csv:{line}" for line in ROWS_KEPT} | {"sections.md:7"}
    markdown = {row["line"]: row["reason"] for row in rejected if row["source"] == "sections.md"}
    assert markdown == {11: "missing_key_facts", 15: "encoding", 23: "missing_answer"}
    assert all(row["detail"] and "reason_zh" in row for row in rejected)
    assert "13812345678" not in json.dumps(_rows(tmp_path / "train.jsonl"), ensure_ascii=False)
    assert _digests(MALFORMED_RAW) == before


def test_cleaned_row_keeps_its_first_line_number_and_loads(tmp_path):
    build_dataset_from_config(_corpus_config(tmp_path, [ROWS_SOURCE], val_ratio=0, test_ratio=0))
    examples = {e.meta["id"]: e for e in load_chat_jsonl(tmp_path / "train.jsonl")}
    assert examples["rows.csv:10"].question == "第一行写不下，第二行问：换货要几天？"
    assert examples["rows.csv:12"].question == "退款多久到账？"
    assert examples["rows.csv:22"].question == "积分怎么用？"
    assert examples["rows.csv:23"].question == "我的手机[手机号]，自提要等多久？"


@pytest.mark.parametrize("source, words", [
    ({"path": "not_a_workbook.xlsx", "kind": "xlsx", "question_column": "问题"}, ["not_a_workbook.xlsx", ".xlsx"]),
    ({"path": "missing_column.csv", "kind": "csv", "question_column": "问题"}, ["missing_column.csv", "'问题'", "提问"]),
    ({"path": "gbk_file.csv", "kind": "csv", "question_column": "问题"}, ["gbk_file.csv:1", "encoding"]),
    ({"path": "empty.csv", "kind": "csv", "question_column": "问题"}, ["empty.csv:1", "表头"]),
    ({"path": "no_such_file.csv", "kind": "csv", "question_column": "问题"}, ["no_such_file.csv", "不存在"]),
])
def test_unreadable_file_is_one_clear_error(tmp_path, source, words):
    with pytest.raises(DataError) as caught:
        build_dataset_from_config(_corpus_config(tmp_path, [source]))
    assert all(word in str(caught.value) for word in words), str(caught.value)


def test_gbk_file_reads_with_its_encoding(tmp_path):
    source = {"path": "gbk_file.csv", "kind": "csv", "encoding": "gbk", "question_column": "问题",
              "answer_column": "答案", "key_facts_column": "关键信息"}
    build_dataset_from_config(_corpus_config(tmp_path, [source], val_ratio=0, test_ratio=0))
    assert load_chat_jsonl(tmp_path / "train.jsonl")[0].question == "退货要几天？"


@pytest.mark.parametrize("data, words", [
    ({"sources": []}, ["data.sources"]),
    ({"scenario": "intent"}, ["data.labels"]),
    ({"min_chars": 50, "max_chars": 10}, ["min_chars", "max_chars"]),
    ({"built_dir": str(MALFORMED_RAW / "out")}, ["raw_dir", "只读"]),
])
def test_bad_build_settings_are_config_errors(tmp_path, data, words):
    raw = {"data": {"scenario": "domain_qa", "raw_dir": str(MALFORMED_RAW), "sources": [ROWS_SOURCE]}}
    cfg = build_config(raw, {**_into(tmp_path), **{f"data.{k}": v for k, v in data.items()}})
    with pytest.raises(ConfigError) as caught:
        build_dataset_from_config(cfg)
    assert all(word in str(caught.value) for word in words), str(caught.value)
    assert not (MALFORMED_RAW / "out").exists()


@pytest.mark.parametrize("source, words", [
    ({"path": "a.csv", "kind": "csv"}, ["data.sources[0]", "question_column"]),
    ({"path": "a.csv", "kind": "csv", "questoin_column": "q"}, ["data.sources[0].questoin_column", "question_column"]),
    ({"path": "a.md", "kind": "markdown", "sheet": "x"}, ["data.sources[0]", "sheet", "markdown"]),
    ({"path": "a.csv", "kind": "tsv", "question_column": "q"}, ["data.sources[0].kind", "'csv'"]),
    ({"path": "a.csv", "kind": "csv", "question_column": "q", "encoding": "latin-9x"}, ["encoding", "gbk"]),
    ({"kind": "csv", "question_column": "q"}, ["data.sources[0].path", "必填"]),
])
def test_bad_source_entries_name_the_field_in_chinese(source, words):
    with pytest.raises(ConfigError) as caught:
        build_config({"data": {"sources": [source]}})
    assert all(word in str(caught.value) for word in words), str(caught.value)


def test_day1_configs_need_no_data_build_settings():
    cfg = load_config(ROOT / "day1" / "configs" / "gemma3-270m_lora_sft.yaml")
    assert cfg.data.sources == [] and cfg.data.test_file is None and cfg.data.scenario == "faq"
    with pytest.raises(ConfigError, match="data.sources"):
        build_dataset_from_config(cfg)


# --- the three shipped scenarios ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Each shipped scenario built once into a scratch folder, with raw digests before and after."""
    results = {}
    for name, config in SCENARIOS.items():
        out = tmp_path_factory.mktemp(name)
        raw_dir = Path(load_config(config).data.raw_dir)
        before = _digests(raw_dir)
        report = build_dataset(config, **_into(out))
        results[name] = (report, out, before, _digests(raw_dir))
    return results


# (train, val, test) ranges the course needs: enough to learn in ~70 steps, enough to measure
SIZES = {"faq": ((120, 200), (20, 40), (30, 60)), "intent": ((90, 200), (10, 40), (20, 60)),
         "domain_qa": ((25, 80), (5, 20), (5, 20))}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_shipped_scenario_builds_loadable_splits_of_the_planned_size(built, scenario):
    report, out, raw_before, raw_after = built[scenario]
    assert raw_before == raw_after
    for name, (low, high) in zip(("train", "val", "test"), SIZES[scenario]):
        examples = load_chat_jsonl(out / f"{name}.jsonl")
        assert low <= len(examples) <= high and report.splits[name] == len(examples)
        for example in examples:
            assert example.key_facts and all(fact in example.answer for fact in example.key_facts)
            assert not find_pii(example.question), example.meta["id"]
            if scenario == "intent":
                assert example.answer == example.meta["label"]
    summary = json.loads((out / "data_report.json").read_text(encoding="utf-8"))
    assert summary == report.summary
    assert (out / "length_hist.png").stat().st_size > 1000
    assert "## 泄漏检查" in (out / "data_report.md").read_text(encoding="utf-8")


def test_show_report_prints_the_markdown_outside_jupyter(built, capsys):
    show_report(built["faq"][0])
    shown = capsys.readouterr().out
    assert shown.startswith("# 数据构建报告（场景：faq）") and "## 拒绝原因" in shown


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_raw_row_is_kept_or_rejected_once(built, scenario):
    report, out, _, _ = built[scenario]
    cfg = load_config(SCENARIOS[scenario])
    reads = [read_source(source, cfg.data.raw_dir) for source in cfg.data.sources]
    seen = sum(len(read.records) + len(read.problems) for read in reads)
    rejected = load_rejected(out)
    assert seen == sum(report.splits.values()) + len(rejected)
    assert sum(report.rejected.values()) == len(rejected)
    assert all(row["source"] and row["line"] >= 1 and row["reason"] for row in rejected)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_no_near_duplicate_crosses_splits(built, scenario):
    report, out, _, _ = built[scenario]
    assert report.leakage["passed"] and report.leakage["pairs_found"] == []
    threshold = report.summary["settings"]["near_duplicate_threshold"]
    train = [e.question for e in load_chat_jsonl(out / "train.jsonl")]
    for name in ("val", "test"):
        for example in load_chat_jsonl(out / f"{name}.jsonl"):
            assert max(question_similarity(example.question, q) for q in train) < threshold, example.question


def test_faq_test_split_asks_facts_taught_in_train(built):
    report, out, _, _ = built["faq"]
    train_facts = {e.meta["fact_id"] for e in load_chat_jsonl(out / "train.jsonl")}
    for name in ("val", "test"):
        assert {e.meta["fact_id"] for e in load_chat_jsonl(out / f"{name}.jsonl")} <= train_facts
    assert report.summary["facts"]["held_out_without_train"] == []


def test_faq_raw_problems_planted_in_the_export_are_all_caught(built):
    report, _, _, _ = built["faq"]
    planted = {"empty", "bad_columns", "encoding", "too_short", "too_long", "missing_answer", "unknown_fact",
               "key_fact_not_in_answer", "not_in_policy", "duplicate", "conflict", "near_duplicate"}
    assert planted <= set(report.rejected)
    assert all(report.pii[kind] > 0 for kind in ("phone", "email", "id_card", "bank_card"))


def test_intent_labels_outside_the_list_are_rejected(built):
    report, out, _, _ = built["intent"]
    labels = set(load_config(SCENARIOS["intent"]).data.labels)
    assert {"missing_label", "unknown_label"} <= set(report.rejected)
    for name in ("train", "val", "test"):
        assert {e.meta["label"] for e in load_chat_jsonl(out / f"{name}.jsonl")} == labels
    assert "{labels}" not in load_chat_jsonl(out / "train.jsonl")[0].messages[0]["content"]


def test_rebuilding_gives_identical_files(built, tmp_path):
    report, out, _, _ = built["faq"]
    again = build_dataset(SCENARIOS["faq"], **_into(out))
    assert again.summary == report.summary
    before = _digests(out)
    build_dataset(SCENARIOS["faq"], **_into(out))
    assert _digests(out) == before


def test_another_seed_moves_rows_but_keeps_the_guarantees(built, tmp_path):
    report = build_dataset(SCENARIOS["faq"], **_into(tmp_path), **{"data.split_seed": 7})
    first = {e.meta["id"] for e in load_chat_jsonl(built["faq"][1] / "test.jsonl")}
    second = {e.meta["id"] for e in load_chat_jsonl(tmp_path / "test.jsonl")}
    assert first != second
    assert report.leakage["passed"] and report.summary["facts"]["held_out_without_train"] == []


def test_without_masking_personal_data_stays_and_the_report_says_so(tmp_path):
    report = build_dataset(SCENARIOS["faq"], **_into(tmp_path), **{"data.mask_pii": False})
    texts = [e.question for name in ("train", "val", "test") for e in load_chat_jsonl(tmp_path / f"{name}.jsonl")]
    assert any(find_pii(text) for text in texts)
    assert report.summary["pii"]["enabled"] is False and "未开启脱敏" in render_markdown(report.summary)


# --- split and leakage mechanics ---------------------------------------------------------------------------------

def _unrelated_question(seed: int) -> str:
    return "".join(chr(0x4E00 + (seed * 7919 + position * 104729) % 20000) for position in range(8))


def test_similar_questions_with_different_answers_share_a_split(tmp_path):
    """Near-duplicates that must both stay (different answers) are never split apart."""
    lines = ["问题,答案,关键信息,知识点"]
    lines += [f"{_unrelated_question(i)},答案{i}：编号{i}。,编号{i}," for i in range(10)]  # lines 2-11
    lines += ["请问退货运费谁来出呢,答案A：运费A。,运费A,", "请问退货运费谁来出呀,答案B：运费B。,运费B,"]  # 12, 13
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "qa.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    places = set()
    for seed in range(12):
        raw = {"data": {"scenario": "domain_qa", "raw_dir": str(tmp_path / "raw"), "split_seed": seed,
                        "near_duplicate_threshold": 0.9, "test_ratio": 0.3, "val_ratio": 0.2,
                        "sources": [{**ROWS_SOURCE, "path": "qa.csv"}]}}
        report = build_dataset_from_config(build_config(raw, _into(tmp_path / "out")))
        where = {row["id"]: name for name in ("train", "val", "test") for row in _rows(tmp_path / "out" / f"{name}.jsonl")}
        assert len(where) == 12 and where["qa.csv:12"] == where["qa.csv:13"]
        assert report.leakage["passed"]
        places.add(where["qa.csv:12"])
    assert places == {"train", "val", "test"}  # the pair really moves with the seed


def test_leakage_check_removes_a_planted_copy():
    def example(line: int, question: str) -> Example:
        return Example(RawRecord("x.csv", line, question), question, "答案7天。", ["7天"], "F1")

    splits = {"train": [example(2, "退货要几天才可以"), example(3, "会员多少钱")],
              "val": [example(4, "积分怎么用")], "test": [example(5, "退货要几天才可以呀"), example(6, "发票怎么开")]}
    rejections = _Rejections(mask=True)
    result, cleaned = _check_leakage(splits, 0.85, rejections)
    assert not result["passed"] and [pair["id"] for pair in result["pairs_found"]] == ["x.csv:5"]
    assert [e.id for e in cleaned["test"]] == ["x.csv:6"] and len(cleaned["val"]) == 1
    assert rejections.rows[0]["reason"] == "leakage" and rejections.rows[0]["line"] == 5


# --- the instructor's held-out set -------------------------------------------------------------------------------

def test_heldout_set_asks_every_fact_with_new_wording(built):
    _, out, _, _ = built["faq"]
    heldout = load_chat_jsonl(HELDOUT)
    train = load_chat_jsonl(out / "train.jsonl")
    answers = {e.meta["fact_id"]: (e.answer, e.key_facts) for e in train}
    assert 25 <= len(heldout) <= 40
    assert {e.meta["fact_id"] for e in heldout} == set(answers)
    for example in heldout:
        assert (example.answer, example.key_facts) == answers[example.meta["fact_id"]]
        assert example.messages[0] == train[0].messages[0]
    cfg = load_config(SCENARIOS["faq"])
    raw_questions = [r.question for s in cfg.data.sources for r in read_source(s, cfg.data.raw_dir).records]
    for example in heldout:
        closest = max(question_similarity(example.question, question) for question in raw_questions)
        assert closest < cfg.data.near_duplicate_threshold, example.question


# --- CLI ---------------------------------------------------------------------------------------------------------

def test_cli_data_build_prints_the_summary(tmp_path):
    done = run_cli("data", "build", str(SCENARIOS["domain_qa"]), *[f"{k}={v}" for k, v in _into(tmp_path).items()])
    assert done.returncode == 0, done.stderr
    assert "数据构建完成" in done.stdout and "泄漏检查：通过" in done.stdout
    assert (tmp_path / "data_report.md").exists()


@pytest.mark.parametrize("args, words", [
    ([str(ROOT / "day1" / "configs" / "gemma3-270m_lora_sft.yaml")], ["data.sources"]),
    ([str(SCENARIOS["faq"]), "data.raw_dir=/nonexistent"], ["/nonexistent", "不存在"]),
    ([str(SCENARIOS["faq"]), "data.val_ratio=0.9"], ["data.val_ratio", "小于 0.5"]),
])
def test_cli_data_build_errors_are_one_message(args, words):
    done = run_cli("data", "build", *args)
    assert done.returncode == 2 and done.stderr.startswith("错误：")
    assert all(word in done.stderr for word in words) and "Traceback" not in done.stderr


# --- property: garbage never crashes a build and raw files stay untouched ----------------------------------------

cell = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=15)
garbage_line = st.one_of(st.lists(cell, max_size=6).map(lambda cells: ",".join(cells).encode("utf-8")),
                         st.binary(max_size=40), st.just(b'"unterminated,quote'), st.just(b""))


@pytest.mark.slow  # 25 full builds, ~18 s
@settings(max_examples=25, deadline=None)
@given(lines=st.lists(garbage_line, max_size=12))
def test_garbage_rows_end_in_rejected_rows_never_a_crash(lines):
    good = "退货要几天？,签收后7天内可退货。,7天,\n".encode()
    content = "问题,答案,关键信息,知识点\n".encode() + good + b"\n".join(lines)
    with tempfile.TemporaryDirectory() as folder:
        raw = Path(folder) / "raw"
        raw.mkdir()
        (raw / "rows.csv").write_bytes(content)
        cfg = build_config({"data": {"scenario": "faq", "raw_dir": str(raw), "sources": [ROWS_SOURCE]}},
                           _into(Path(folder) / "out"))
        try:
            report = build_dataset_from_config(cfg)
            assert report.splits["train"] >= 1
        except DataError as exc:  # only when nothing usable is left
            assert "没有任何可用样本" in str(exc)
        assert (raw / "rows.csv").read_bytes() == content
        assert (Path(folder) / "out" / "data_report.json").exists()


def test_under_nbgrader_the_learners_build_is_reused_and_nothing_is_built_for_them(built, tmp_path, monkeypatch):
    from llmcourse.artifacts import ArtifactMissing
    from llmcourse.data.build import build_or_reuse

    report, out, _, _ = built["faq"]
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    reused = build_or_reuse(load_config(SCENARIOS["faq"], **_into(out)))
    assert reused.splits == report.splits and reused.leakage == report.leakage
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamps
    with pytest.raises(ArtifactMissing, match="评分模式"):
        build_or_reuse(load_config(SCENARIOS["faq"], **_into(tmp_path / "empty")))
    assert not (tmp_path / "empty").exists()
