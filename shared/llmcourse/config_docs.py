"""The config's help, generated from the schema: YAML comments and the no-code form's labels.

Every field of :class:`llmcourse.config.CourseConfig` holds its learner-facing help as pydantic
``Field(description=...)``; its choices come from its ``Literal`` type (or ``json_schema_extra["choices"]``)
and its range from its ``ge`` / ``gt`` / ``le`` / ``lt`` constraints. :func:`field_help` joins them into one
line; :func:`regenerate_comments` writes that line as the trailing comment of every key in a config file,
leaving values and full-line comments (a file's own notes) as they are.

Usage::

    python -m llmcourse.config_docs            # rewrite the comments of CONFIG_FILES
    python -m llmcourse.config_docs --check    # exit 1 when a file's comments are not the generated ones
"""

from __future__ import annotations

import re
import sys
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from llmcourse.config import CourseConfig

# The committed config files whose comments are generated, with the exercise whose ranges they show.
CONFIG_FILES = {"day1/configs/gemma3-270m_lora_sft.yaml": "day1", "day1/configs/qwen3-4b_lora_sft.yaml": "day1",
                "day3/config.yaml": None}
COMMENT_COLUMN = 29  # as the files were written by hand: values stay readable, comments line up
_KEY = re.compile(r"^(?P<indent> *)(?P<dash>- +)?(?P<key>[A-Za-z_]\w*):(?P<rest>.*)$")


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def field_info(dotted: str) -> FieldInfo:
    """The pydantic field of ``section.field`` (``data.sources.kind`` for a field of each source)."""
    model: type[BaseModel] | None = CourseConfig
    info = None
    for part in dotted.split("."):
        if model is None or part not in model.model_fields:
            raise KeyError(dotted)
        info = model.model_fields[part]
        model = _inner_model(info.annotation)
    return info


def choices(info: FieldInfo) -> list[Any] | None:
    """The values a field allows, when it is a choice: its ``Literal`` (``None`` aside) or extra choices."""
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if "choices" in extra:
        return list(extra["choices"])
    annotation = info.annotation
    args = [annotation] if typing.get_origin(annotation) is Literal else \
        [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    if args and all(typing.get_origin(arg) is Literal for arg in args):
        return [value for arg in args for value in typing.get_args(arg)]
    return None


def suggested(info: FieldInfo) -> list[Any] | None:
    """Common values of a field that allows more (``lora.r``: 4 | 8 | 16 | 32 | 64), for the form's lists."""
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    return list(extra["suggested"]) if "suggested" in extra else None


def bounds(info: FieldInfo) -> dict[str, Any]:
    """The field's ``ge`` / ``gt`` / ``le`` / ``lt`` constraints, e.g. ``{"ge": 1, "le": 512}``."""
    found = {}
    for item in info.metadata:
        for name in ("ge", "gt", "le", "lt"):
            if getattr(item, name, None) is not None:
                found[name] = getattr(item, name)
    return found


def value_text(value: Any) -> str:
    """A number as the YAML files and the form write it."""
    if isinstance(value, float) and 0 < abs(value) < 0.01 and float(f"{value:.0e}") == value:
        return f"{value:.0e}".replace("e-0", "e-")  # 5e-5, as learning rates are written
    return f"{value:g}" if isinstance(value, float) else str(value)


def range_text(info: FieldInfo) -> str | None:
    """``[1, 512]`` (inclusive), ``(0, 1]`` (0 excluded), ``≥ 0``; None when unbounded."""
    b = bounds(info)
    low = ("[", b["ge"]) if "ge" in b else ("(", b["gt"]) if "gt" in b else None
    high = ("]", b["le"]) if "le" in b else (")", b["lt"]) if "lt" in b else None
    if low and high:
        return f"{low[0]}{value_text(low[1])}, {value_text(high[1])}{high[0]}"
    if low:
        return f"{'≥' if low[0] == '[' else '>'} {value_text(low[1])}"
    if high:
        return f"{'≤' if high[0] == ']' else '<'} {value_text(high[1])}"
    return None


def label(dotted: str) -> str:
    """A short label for a form control: the field's ``title``, else its name."""
    info = field_info(dotted)
    return info.title or dotted.rpartition(".")[2]


def _text(value: Any) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else value_text(value)


def field_help(dotted: str, exercise: str | None = None) -> str:
    """One line of help: choices, what the field does, its range, common values, the exercise's range."""
    info = field_info(dotted)
    if not info.description:
        raise ValueError(f"{dotted} has no description")
    allowed = choices(info)
    parts = [f"choices: {' | '.join(map(_text, allowed))}；{info.description}" if allowed else info.description]
    if not allowed and range_text(info):
        parts.append(f"范围 {range_text(info)}")
    if suggested(info):
        parts.append(f"常用 {' | '.join(map(_text, suggested(info)))}")
    if exercise:
        # grading.checks holds the one copy of the exercise ranges (and imports this package's config)
        from llmcourse.grading.checks import EXERCISES
        rule = next((rule for rule in EXERCISES[exercise] if rule.field == dotted), None)
        if rule:
            parts.append(f"练习要求 {rule.describe()}")
    return "；".join(parts)


def _split_comment(rest: str) -> tuple[str, str | None]:
    """A key line's value and trailing comment: the first `` #`` whose left side parses to the same value."""
    try:
        whole = yaml.safe_load(rest) if rest.strip() else None
    except yaml.YAMLError:
        whole = object()
    for match in re.finditer(r"\s#", rest):
        value = rest[: match.start()]
        try:
            if (yaml.safe_load(value) if value.strip() else None) == whole:
                return value.rstrip(), rest[match.start():].strip()[1:].strip()
        except yaml.YAMLError:
            continue
    return rest.rstrip(), None


def regenerate_comments(text: str, exercise: str | None = None) -> str:
    """``text`` (a config file) with every known key's trailing comment replaced by :func:`field_help`.

    Values, blank lines and full-line comments stay; a key the schema does not know keeps its line. The
    result must load to the same values as ``text``, else ValueError.
    """
    stack: list[tuple[int, str]] = []  # (indent of a key, its dotted path)
    lines = []
    for line in text.splitlines():
        match = _KEY.match(line)
        if not match or line.lstrip().startswith("#"):
            lines.append(line)
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key_indent = indent + len(match["dash"] or "")
        if match["dash"]:  # an item of a list of sections (data.sources): its keys are the item's fields
            while stack and stack[-1][0] >= key_indent:
                stack.pop()
        dotted = f"{stack[-1][1]}.{match['key']}" if stack else match["key"]
        stack.append((key_indent, dotted))
        try:
            help_text = field_help(dotted, exercise)
        except KeyError:
            lines.append(line)
            continue
        value, _ = _split_comment(match["rest"])
        head = f"{match['indent']}{match['dash'] or ''}{match['key']}:{value}"
        lines.append(f"{head.ljust(COMMENT_COLUMN - 1)} # {help_text}" if len(head) < COMMENT_COLUMN - 1
                     else f"{head}  # {help_text}")
    result = "\n".join(lines) + ("\n" if text.endswith("\n") else "")
    if yaml.safe_load(result) != yaml.safe_load(text):
        raise ValueError("regenerating the comments would change a value")
    return result


def stale_files(root: Path | None = None, files: dict[str, str | None] | None = None) -> list[str]:
    """The config files whose comments are not the generated ones."""
    from llmcourse.artifacts import COURSE_ROOT

    root = root or COURSE_ROOT
    return [name for name, exercise in (files or CONFIG_FILES).items()
            if (text := (root / name).read_text(encoding="utf-8")) != regenerate_comments(text, exercise)]


def write_files(root: Path | None = None, files: dict[str, str | None] | None = None) -> list[str]:
    """Rewrite the comments of the config files; the names of those that changed."""
    from llmcourse.artifacts import COURSE_ROOT

    root = root or COURSE_ROOT
    changed = stale_files(root, files)
    for name in changed:
        path = root / name
        path.write_text(regenerate_comments(path.read_text(encoding="utf-8"), (files or CONFIG_FILES)[name]),
                        encoding="utf-8")
    return changed


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--check" in argv:
        stale = stale_files()
        for name in stale:
            print(f"{name}: 注释与 config.py 里的字段说明不一致；运行 python -m llmcourse.config_docs 重新生成")
        return 1 if stale else 0
    for name in write_files():
        print(f"已重新生成注释：{name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
