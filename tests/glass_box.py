"""Count the real library calls each notebook's code cells make (the calls the course teaches).

Usage: ``python tests/glass_box.py [REF]`` prints one row per notebook (REF: a git commit; default: the
working tree). tests/test_glass_box.py holds each notebook to its minimum.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name (as a call's function, attribute or plain name) → library it belongs to
TAUGHT = {
    "from_pretrained": "transformers/unsloth", "get_peft_model": "peft/unsloth", "LoraConfig": "peft",
    "PeftModel": "peft", "SFTTrainer": "trl", "SFTConfig": "trl", "train_on_responses_only": "unsloth",
    "train": "trl (trainer.train)", "LLM": "vllm", "SamplingParams": "vllm", "LoRARequest": "vllm",
    "chat": "vllm (llm.chat)", "OpenAI": "openai", "create": "openai (chat.completions.create)",
    "generate": "transformers/vllm (generate)", "apply_chat_template": "transformers",
    "BM25": "bm25s", "retrieve": "bm25s (index.retrieve)", "lcut": "jieba",
}


def calls(source: str) -> Counter:
    """Calls to TAUGHT names in one cell (IPython ! and % lines are skipped)."""
    lines = [line for line in source.split("\n") if not line.lstrip().startswith(("!", "%"))]
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return Counter()
    found = Counter()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in TAUGHT:
                found[name] += 1
    return found


def notebook_calls(text: str) -> Counter:
    total = Counter()
    for cell in json.loads(text)["cells"]:
        if cell["cell_type"] == "code":
            total += calls("".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"])
    return total


def table(ref: str | None = None) -> dict[str, Counter]:
    if ref is None:
        return {str(p.relative_to(ROOT)): notebook_calls(p.read_text(encoding="utf-8"))
                for p in sorted(ROOT.glob("day[123]/*.ipynb"))}
    names = subprocess.run(["git", "-C", str(ROOT), "ls-tree", "-r", "--name-only", ref, "day1", "day2", "day3"],
                           capture_output=True, text=True, check=True).stdout.split()
    return {n: notebook_calls(subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:{n}"], capture_output=True,
                                             text=True, check=True).stdout)
            for n in names if n.endswith(".ipynb")}


if __name__ == "__main__":
    for name, found in table(sys.argv[1] if len(sys.argv) > 1 else None).items():
        print(f"{name:<32} {sum(found.values()):>3}  " + ", ".join(f"{k}×{v}" for k, v in sorted(found.items())))
