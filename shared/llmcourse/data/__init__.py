"""Stage 1, data: raw business files → cleaned, masked, split chat JSONL, with a report.

Usage: ``from llmcourse.data.jsonl import load_chat_jsonl`` (read/validate JSONL), ``data.raw`` (read CSV /
Excel / Markdown), ``data.build`` (``llmcourse data build``), ``data.report`` (its report), ``data.pii``.
``from llmcourse.data import load_chat_jsonl`` (the name before the regrouping) still works.
"""
from llmcourse.legacy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, "llmcourse.data.jsonl")
