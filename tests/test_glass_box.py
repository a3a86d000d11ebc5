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


def test_day1_builds_the_model_the_lora_and_the_trainer_in_cells_and_the_learner_calls_train():
    """Day 1 02_lora_training: Unsloth's loader and LoRA, TRL's SFTTrainer and trainer.train() run in cells,
    with the arguments the course's own train() uses; those cells are skipped under nbgrader and the saved
    run is read back by a cell that is not."""
    import ast
    import json

    from glass_box import ROOT, calls
    from llmcourse.grading.nbgrader_plugins import SKIP_TAG

    path = ROOT / "day1" / "02_lora_training.ipynb"
    cells = [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]
    sources = ["".join(c["source"]) for c in cells]
    skipped = [SKIP_TAG in c["metadata"].get("tags", []) for c in cells]
    nodes = [node for source in sources for node in ast.walk(ast.parse(source))]
    imported = {(n.module, alias.name) for n in nodes if isinstance(n, ast.ImportFrom) for alias in n.names}
    assert {("unsloth", "FastLanguageModel"), ("trl", "SFTTrainer"),
            ("unsloth.chat_templates", "train_on_responses_only")} <= imported, imported

    def cell_of(name, owner=None):  # the index of the cell that calls owner.name(...)
        for index, source in enumerate(sources):
            for n in ast.walk(ast.parse(source)):
                if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == name \
                        and (owner is None or getattr(n.func.value, "id", None) == owner):
                    return index
                if owner is None and isinstance(n, ast.Call) and getattr(n.func, "id", None) == name:
                    return index
        raise AssertionError(f"{owner or ''}.{name}(...) is not called in a Day 1 code cell")

    order = [cell_of("from_pretrained", "FastLanguageModel"), cell_of("get_peft_model", "FastLanguageModel"),
             cell_of("SFTTrainer"), cell_of("train_on_responses_only"), cell_of("train", "trainer")]
    assert order == sorted(order), "load → LoRA → SFTTrainer → train, in this order"
    for index in order:
        assert skipped[index], f"cell {index} trains or loads weights but runs under nbgrader"
        assert calls(sources[index]), index
    # the arguments come from the same builders train() uses (one code path): no hand-copied values
    step_source = "\n".join(sources[order[0]: order[-1] + 1])
    for builder in ("run.model_args()", "run.lora_args()", "run.trainer_args(tokenizer)", "run.response_parts()"):
        assert builder in step_source, builder
    training = ast.unparse(ast.parse((ROOT / "shared/llmcourse/training/run.py").read_text(encoding="utf-8")))
    for builder in ("model_args(", "unsloth_lora_args(", "run.trainer_args(tokenizer)", "run.response_parts()"):
        assert builder in training, builder
    reread = [i for i, s in enumerate(sources) if "saved_run(cfg)" in s]
    assert reread and not skipped[reread[0]] and reread[0] > order[-1], "no graded-time cell reads the saved run"


def test_each_day3_notebook_has_a_step_the_learner_writes_with_the_real_call():
    """Day 3: every notebook has a solution region (nbgrader source) in a cell that makes the step's real call,
    whose learner edition (the cell without the region) still shows that call's shape; 03_deploy's
    conversation goes through the openai client in that cell, and no cell that needs the server runs under
    nbgrader (the saved conversation is reused)."""
    import ast
    import json
    import re
    import textwrap

    from glass_box import ROOT
    from llmcourse.grading.nbgrader_plugins import SKIP_TAG

    region = re.compile(r"[ \t]*### BEGIN SOLUTION\n(.*?)[ \t]*### END SOLUTION\n?", re.DOTALL)

    def called(source):  # {name: [keyword names of each call]} for plain and attribute calls
        found = {}
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
                found.setdefault(name, []).append({k.arg for k in node.keywords})
        return found

    # notebook: (calls the solution region makes, calls the cell makes outside it: the learner sees them)
    wanted = {"01_data.ipynb": (set(), {"load_config", "build_or_reuse"}),
              "02_train.ipynb": ({"LoraConfig"}, {"LoraConfig", "config_with_lora", "train_or_reuse"}),
              "03_deploy.ipynb": ({"create"}, {"OpenAI"}),
              "04_verify.ipynb": ({"groupby", "mean"}, set())}
    for name, (in_region, in_skeleton) in wanted.items():
        cells = json.loads((ROOT / "day3" / name).read_text(encoding="utf-8"))["cells"]
        answers = [(c, "".join(c["source"])) for c in cells if c["cell_type"] == "code"
                   and c["metadata"].get("nbgrader", {}).get("solution") and region.search("".join(c["source"]))]
        assert answers, f"{name}: no solution region in a code cell"
        ok = []
        for cell, source in answers:
            solution = "\n".join(textwrap.dedent(r) for r in region.findall(source))  # a region may be indented
            skeleton = region.sub("", source)
            assert solution.strip() and skeleton.strip(), name
            ok.append(in_region <= set(called(solution)) and in_skeleton <= set(called(skeleton)))
        assert any(ok), f"{name}: no learner-written step with the real call ({in_region} / {in_skeleton})"

    cells = json.loads((ROOT / "day3" / "03_deploy.ipynb").read_text(encoding="utf-8"))["cells"]
    code = [(c, "".join(c["source"])) for c in cells if c["cell_type"] == "code"]
    [(_, chat)] = [(c, s) for c, s in code if c["metadata"].get("nbgrader", {}).get("grade_id") == "write_chat"]
    solution = called("\n".join(textwrap.dedent(r) for r in region.findall(chat)))
    imported = {(n.module, a.name) for _, s in code for n in ast.walk(ast.parse(s)) if isinstance(n, ast.ImportFrom)
                for a in n.names}
    assert ("openai", "OpenAI") in imported, imported  # the library's own client, not a course wrapper
    assert any({"base_url", "api_key"} <= kw for kw in called(chat)["OpenAI"]), called(chat)["OpenAI"]
    assert all({"model", "messages"} <= kw for kw in solution["create"]), solution["create"]
    assert "messages=history" in chat and ("history +=" in chat or "history.append(" in chat), \
        "the follow-up must carry the history"
    for cell, source in code:  # the server is started, used and stopped only outside grading
        if any(call in source for call in ("start_server(", "server.base_url", "server.stop(")):
            assert SKIP_TAG in cell["metadata"].get("tags", []), source[:80]
    assert any("conversation_or_reuse(lambda: server, chat" in s and SKIP_TAG not in c["metadata"].get("tags", [])
               for c, s in code), "the conversation is not saved (or not reused under nbgrader)"
    assert not any(s.lstrip().startswith("!") and "client.py" in s for _, s in code), "still only through client.py"


def test_the_retrieval_arm_runs_bm25s_and_jieba_in_cells():
    """Day 2 01_inference and Day 3 04_verify: the bm25s index, its retrieve and jieba's words in view;
    the four arms are measured with the retriever built from that very index."""
    import json

    from glass_box import ROOT, notebook_calls
    for name, lcut in (("day2/01_inference.ipynb", 1), ("day3/04_verify.ipynb", 0)):
        path = ROOT / name
        counts = notebook_calls(path.read_text(encoding="utf-8"))
        assert counts["BM25"] >= 1 and counts["retrieve"] >= 1 and counts["lcut"] >= lcut, (name, counts)
        source = "\n".join("".join(c["source"]) for c in json.loads(path.read_text(encoding="utf-8"))["cells"]
                           if c["cell_type"] == "code")
        assert "import bm25s" in source and "index.index(" in source and "augment_messages(" in source, name
        assert "Retriever(index, passages" in source and "retriever=retriever" in source, name
