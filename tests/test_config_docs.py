"""The config's help lives in the schema (Field descriptions); YAML comments and form labels are generated."""
import re

import pytest
import yaml
from conftest import ROOT
from llmcourse.config import CourseConfig, load_config
from llmcourse.config_docs import (
    CONFIG_FILES,
    choices,
    field_help,
    field_info,
    main,
    regenerate_comments,
    stale_files,
)
from pydantic import BaseModel


def all_fields(model=CourseConfig, prefix=""):
    for name, info in model.model_fields.items():
        yield prefix + name, info
        inner = next((a for a in (info.annotation, *getattr(info.annotation, "__args__", ()))
                      if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if inner:
            yield from all_fields(inner, f"{prefix}{name}.")


def test_every_field_has_a_chinese_description():
    fields = dict(all_fields())
    assert len(fields) > 90 and "data.sources.kind" in fields
    missing = [name for name, info in fields.items() if not info.description]
    assert not missing
    not_chinese = [name for name, info in fields.items() if not re.search(r"[\u4e00-\u9fff]", info.description)]
    assert not not_chinese


def test_help_names_the_choices_and_range_of_the_type():
    assert field_help("model.device").startswith("choices: auto | cpu | cuda；")
    assert choices(field_info("lora.bias")) == ["none", "all", "lora_only"]
    assert "范围 [1, 512]" in field_help("lora.r") and "范围 (0, 1]" in field_help("train.learning_rate")
    assert "gemma3-270m | smollm2-135m-instruct" in field_help("model.name")
    # The Day 1 exercise ranges come from grading.checks.EXERCISES, not from the descriptions.
    assert "练习要求 8 到 32" in field_help("lora.r", "day1") and "练习" not in field_help("lora.r")


@pytest.mark.parametrize("name", sorted(CONFIG_FILES))
def test_committed_comments_are_the_generated_ones(name):
    text = (ROOT / name).read_text(encoding="utf-8")
    assert regenerate_comments(text, CONFIG_FILES[name]) == text, \
        f"{name}: run python -m llmcourse.config_docs"
    # The comments come from the schema alone: stripped and regenerated they return, values unchanged.
    stripped = "\n".join(re.sub(r"^(\s*(- +)?\w+:.*?)\s+#.*$", r"\1", line) if not line.lstrip().startswith("#")
                         else line for line in text.splitlines()) + "\n"
    assert stripped != text and yaml.safe_load(stripped) == yaml.safe_load(text)
    assert regenerate_comments(stripped, CONFIG_FILES[name]) == text
    assert load_config(ROOT / name)  # and the file is still a valid config


def test_regenerating_keeps_values_and_notes_and_a_changed_description_shows(monkeypatch):
    text = ("# a note about this file\nlora:   # old\n  r: 8   # old help\n  # why 4 here\n"
            "  lora_alpha: 16\ntrain:\n  unknown_key: 1  # kept\nserve:\n  system_prompt: 'a # not a comment'  # old\n")
    monkeypatch.setattr(field_info("lora.r"), "description", "新的说明")
    out = regenerate_comments(text)
    assert yaml.safe_load(out) == yaml.safe_load(text)
    assert "# a note about this file" in out and "  # why 4 here" in out and "unknown_key: 1  # kept" in out
    assert "r: 8" in out and "# 新的说明；范围 [1, 512]" in out and "old" not in out
    assert "'a # not a comment'" in out


def test_check_fails_on_a_stale_file(tmp_path):
    (tmp_path / "c.yaml").write_text("lora:\n  r: 8  # hand-written\n", encoding="utf-8")
    assert stale_files(tmp_path, {"c.yaml": None}) == ["c.yaml"]
    assert main(["--check"]) == 0  # the committed files are current
