"""Read raw business files (CSV export, Excel sheet, Markdown document) into uniform records.

Usage::

    from llmcourse.config import load_config
    from llmcourse.data.raw import read_source
    cfg = load_config("day3/config.yaml")
    read = read_source(cfg.data.sources[0], cfg.data.raw_dir)
    read.records[0]    # RawRecord(source='faq_knowledge_base.xlsx', line=2, question='下单后多久能送到？', ...)
    read.problems      # rows that could not be read: empty, wrong column count, bad bytes

What each kind gives (options are the fields of :class:`llmcourse.config.DataSource`):

- ``csv``: one record per row; the header row names the columns. Bytes that are not valid in
  ``encoding`` and rows with a wrong number of columns become problems, never exceptions.
- ``xlsx``: the same for one sheet (``sheet``, default the first), read with openpyxl.
  A ``paraphrase_column`` cell holds more questions, one per line (or separated by ``|``);
  each becomes its own record sharing the row's answer, fact and topic.
- ``markdown``: with ``use: rows`` every heading that ends with ``？``/``?`` is a question, the text
  under it is the answer, its **bold** spans are the key facts and a trailing ``{#ID}`` is the fact
  id. With ``use: reference`` the whole plain text is returned for fact checking instead.

Line numbers are those a learner sees in an editor (CSV: the row's first line; Excel: the row
number; Markdown: the heading's line). A file that cannot be read at all (missing, not a
workbook, a named column or sheet missing) raises :class:`llmcourse.data.jsonl.DataError`.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import ParseError

from llmcourse.config import DataSource
from llmcourse.data.jsonl import DataError

# Undecodable bytes survive decoding as lone surrogates (errors="surrogateescape").
_BAD_BYTES = re.compile("[\udc80-\udcff]")
_KEY_FACT_SEPARATORS = re.compile(r"[;；\n|｜]")
_PARAPHRASE_SEPARATORS = re.compile(r"[\n|｜]")
_HEADING_ID = re.compile(r"\s*\{#([A-Za-z0-9_.-]+)\}\s*$")
_LEFTOVER_BOLD = re.compile(r"\*\*(?!\s)(.+?)(?<!\s)\*\*")


@dataclass
class RawRecord:
    """One question (with whatever else its row says) before cleaning."""

    source: str
    line: int
    question: str
    answer: str | None = None
    fact_id: str | None = None
    topic: str | None = None
    label: str | None = None
    key_facts: list[str] | None = None
    part: int = 0  # 0: the row's question; k: its k-th paraphrase

    @property
    def location(self) -> str:
        return f"{self.source}:{self.line}" + (f"#{self.part}" if self.part else "")


@dataclass
class RawProblem:
    """A raw row that could not become a record."""

    source: str
    line: int
    reason: str
    detail: str
    text: str


@dataclass
class SourceRead:
    source: str
    kind: str
    use: str = "rows"
    rows: int = 0  # raw rows (or question sections) seen, good or bad
    records: list[RawRecord] = field(default_factory=list)
    problems: list[RawProblem] = field(default_factory=list)
    reference_text: str = ""


def has_bad_bytes(text: str) -> bool:
    return bool(_BAD_BYTES.search(text))


def show_bad_bytes(text: str) -> str:
    """Printable form of text with undecodable bytes (each shown as U+FFFD)."""
    return _BAD_BYTES.sub("\ufffd", text)


def read_source(source: DataSource, raw_dir: str | Path) -> SourceRead:
    """Read one configured source file; the path is relative to ``raw_dir``."""
    path = Path(raw_dir) / source.path
    if not path.is_file():
        raise DataError(path, [f"{path}: 文件不存在；检查 data.raw_dir 与 data.sources 里的 path"])
    name = Path(source.path).as_posix()
    readers = {"csv": _read_csv, "xlsx": _read_xlsx, "markdown": _read_markdown}
    return readers[source.kind](path, source, SourceRead(name, source.kind, source.use))


def _split(text: str | None, separators: re.Pattern) -> list[str]:
    return [part.strip() for part in separators.split(text or "") if part.strip()]


def _require_columns(path: Path, source: DataSource, columns: list[str]) -> None:
    wanted = {option: getattr(source, option) for option in DataSource.model_fields
              if option.endswith("_column") and getattr(source, option)}
    missing = [f"{option}: '{name}'" for option, name in wanted.items() if name not in columns]
    if missing:
        raise DataError(path, [f"{path}: 找不到列 {', '.join(missing)}；表头里的列有：{', '.join(columns)}"])


def _table_records(values: dict[str, str], source: DataSource, read: SourceRead, line: int) -> None:
    """Turn one table row (column -> text) into records, or a problem if it is empty."""
    def cell(option: str) -> str | None:
        column = getattr(source, option)
        return values.get(column, "").strip() if column else None

    if not any(value.strip() for value in values.values()):
        read.problems.append(RawProblem(read.source, line, "empty", "空行", ""))
        return
    common = {"answer": cell("answer_column"), "fact_id": cell("fact_column") or None,
              "topic": cell("topic_column") or None, "label": cell("label_column"),
              "key_facts": _split(cell("key_facts_column"), _KEY_FACT_SEPARATORS) if source.key_facts_column else None}
    read.records.append(RawRecord(read.source, line, cell("question_column") or "", **common))
    for part, question in enumerate(_split(cell("paraphrase_column"), _PARAPHRASE_SEPARATORS), start=1):
        read.records.append(RawRecord(read.source, line, question, part=part, **common))


def _read_csv(path: Path, source: DataSource, read: SourceRead) -> SourceRead:
    text = path.read_bytes().decode(source.encoding, errors="surrogateescape").removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=source.delimiter)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise DataError(path, [f"{path}:1: 表头无法解析（{exc}）"]) from None
    if not header or has_bad_bytes(",".join(header)):
        raise DataError(path, [f"{path}:1: 表头为空或不是 {source.encoding} 编码；检查 encoding 选项"])
    columns = [name.strip() for name in header]
    _require_columns(path, source, columns)
    line = reader.line_num + 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # e.g. a field over the csv module's size limit
            read.rows += 1
            read.problems.append(RawProblem(read.source, line, "bad_row", f"无法解析：{exc}", ""))
            line = reader.line_num + 1
            continue
        row_line, line = line, reader.line_num + 1
        read.rows += 1
        raw_text = source.delimiter.join(fields)
        if has_bad_bytes(raw_text):
            read.problems.append(RawProblem(read.source, row_line, "encoding",
                                            f"含有不是 {source.encoding} 的字节（显示为 �）", show_bad_bytes(raw_text)))
        elif fields and len(fields) != len(columns) and any(value.strip() for value in fields):
            read.problems.append(RawProblem(read.source, row_line, "bad_columns",
                                            f"应有 {len(columns)} 列，实际 {len(fields)} 列（字段里的逗号要加引号）", raw_text))
        else:
            _table_records(dict(zip(columns, fields)), source, read, row_line)
    return read


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def _read_xlsx(path: Path, source: DataSource, read: SourceRead) -> SourceRead:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, ParseError, KeyError, OSError, ValueError) as exc:
        raise DataError(path, [f"{path}: 不是有效的 .xlsx 文件（{type(exc).__name__}）；请在 Excel 中另存为 .xlsx"]) from None
    try:
        if source.sheet is not None and source.sheet not in workbook.sheetnames:
            raise DataError(path, [f"{path}: 没有工作表 '{source.sheet}'；已有：{', '.join(workbook.sheetnames)}"])
        sheet = workbook[source.sheet] if source.sheet is not None else workbook.worksheets[0]
        rows = sheet.iter_rows(values_only=True)
        header = [_cell_text(value).strip() for value in next(rows, ())]
        _require_columns(path, source, header)
        for line, values in enumerate(rows, start=2):
            read.rows += 1
            texts = [_cell_text(value) for value in values] + [""] * (len(header) - len(values))
            _table_records(dict(zip(header, texts)), source, read, line)
    finally:
        workbook.close()
    return read


def _inline_text(token) -> tuple[str, list[str]]:
    """Plain text of an inline token and its bold spans."""
    text, bold, depth = [], [], 0
    for child in token.children or []:
        if child.type == "strong_open":
            depth += 1
            bold.append("")
        elif child.type == "strong_close":
            depth -= 1
        elif child.type in ("text", "code_inline"):
            text.append(child.content)
            if depth:
                bold[-1] += child.content
        elif child.type in ("softbreak", "hardbreak"):
            text.append("\n")
    # CommonMark does not see **0℃**时 as bold (punctuation next to a CJK letter), so markers can
    # survive as text; take those spans as bold too.
    plain = _LEFTOVER_BOLD.sub(lambda match: bold.append(match.group(1)) or match.group(1), "".join(text))
    return plain, [span.strip() for span in bold if span.strip()]


def _read_markdown(path: Path, source: DataSource, read: SourceRead) -> SourceRead:
    from markdown_it import MarkdownIt

    text = path.read_bytes().decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    tokens = MarkdownIt("commonmark").parse(text)
    if source.use == "reference":
        read.reference_text = "\n".join(_inline_text(token)[0] for token in tokens if token.type == "inline")
        return read
    sections: list[dict[str, Any]] = []
    parents: dict[int, str] = {}
    for index, token in enumerate(tokens):
        if token.type == "heading_open":
            level = int(token.tag[1:])
            heading, _ = _inline_text(tokens[index + 1])
            fact_id = _HEADING_ID.search(heading)
            heading = _HEADING_ID.sub("", heading).strip()
            parents = {depth: name for depth, name in parents.items() if depth < level}
            topic = parents[max(parents)] if parents else None
            parents[level] = heading
            sections.append({"line": token.map[0] + 1, "question": heading, "topic": topic, "answer": [], "bold": [],
                             "fact_id": fact_id.group(1) if fact_id else None})
        elif token.type == "inline" and sections and tokens[index - 1].type != "heading_open":
            body, bold = _inline_text(token)
            sections[-1]["answer"].append(body)
            sections[-1]["bold"] += bold
    for section in sections:
        if not section["question"].endswith(("？", "?")):
            continue  # not a question: background text of the document
        read.rows += 1
        answer = "".join(section["answer"])
        if has_bad_bytes(section["question"] + answer):
            read.problems.append(RawProblem(read.source, section["line"], "encoding", "含有不是 UTF-8 的字节",
                                            show_bad_bytes(section["question"])))
            continue
        read.records.append(RawRecord(read.source, section["line"], section["question"], answer=answer,
                                      fact_id=section["fact_id"], topic=section["topic"],
                                      key_facts=section["bold"] or None))
    return read
