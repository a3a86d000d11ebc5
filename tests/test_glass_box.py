"""The notebooks call the libraries the course teaches in their own cells (counted by tests/glass_box.py)."""


def test_day2_calls_vllm_and_the_openai_client_in_cells():
    """Day 2 02_acceleration: vLLM's LLM + LoRARequest and the openai client, called in cells, not in helpers."""
    import ast
    import json

    from glass_box import ROOT, notebook_calls
    path = ROOT / "day2" / "02_acceleration.ipynb"
    counts = notebook_calls(path.read_text(encoding="utf-8"))
    for name in ("LLM", "SamplingParams", "LoRARequest", "chat", "OpenAI"):
        assert counts[name] >= 1, f"{name}(...) is not called in a Day 2 code cell"
    assert counts["create"] >= 2, "chat.completions.create: one question and one follow-up carrying the history"

    cells = [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]
    trees = [ast.parse("\n".join(line for line in "".join(c["source"]).split("\n")
                                 if not line.lstrip().startswith(("!", "%")))) for c in cells]
    nodes = [node for tree in trees for node in ast.walk(tree)]

    def keywords(name):  # keyword names of every call to ``name`` (plain or attribute)
        return [{k.arg for k in n.keywords} for n in nodes if isinstance(n, ast.Call)
                and (n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", None)) == name]

    imported = {(n.module, alias.name) for n in nodes if isinstance(n, ast.ImportFrom) for alias in n.names}
    # the libraries' own classes, not course wrappers that share their names
    assert {("vllm", "LLM"), ("vllm", "SamplingParams"), ("vllm.lora.request", "LoRARequest"),
            ("openai", "OpenAI")} <= imported, imported
    assert any({"enable_lora", "max_lora_rank"} <= kw for kw in keywords("LLM")), "LLM(...) without LoRA"
    assert any("lora_request" in kw for kw in keywords("chat")), "llm.chat(...) without the adapter"
    assert any({"base_url", "api_key"} <= kw for kw in keywords("OpenAI")), "OpenAI(...) not pointed at our server"
    creates = keywords("create")
    assert creates and all({"model", "messages"} <= kw for kw in creates), creates
    source = "\n".join(ast.unparse(tree) for tree in trees)
    assert "history.append(" in source and "messages=history" in source, "no multi-turn exchange carrying history"
    assert ".usage" in source and "prompt_tokens" in source, "the usage tokens are never read"
    assert "server.stop()" in source, "the server the notebook starts is never stopped"
