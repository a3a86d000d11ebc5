"""Answer questions from the command line with the base model or a fine-tuned adapter.

    python infer.py "退货期是多久？"
    python infer.py --adapter ../day1/runs/my_first_lora/adapter "保修几年？" "客服电话多少？"
    python infer.py --adapter ADAPTER --cases data/default_cases.jsonl --engine transformers --batch-size 8

Prints one line per answer with output tokens, latency and tokens/s. The model comes from the
config (``--config``, default: the CPU stand-in); ``--engine vllm`` needs an NVIDIA GPU.
"""
import argparse
import sys
from pathlib import Path

from llmcourse.evaluation.cases import load_cases
from llmcourse.config import ConfigError, load_config_with_cli_overrides
from llmcourse.data.jsonl import DataError
from llmcourse.inference.engines import load_engine

HERE = Path(__file__).resolve().parent
SYSTEM = "你是云杉智能家居的客服助手，请用简洁准确的中文回答。"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("questions", nargs="*", help="questions to ask")
    parser.add_argument("--config", default=str(HERE.parent / "day1" / "configs" / "gemma3-270m_lora_sft.yaml"))
    parser.add_argument("--adapter", help="LoRA adapter folder; omit for the base model")
    parser.add_argument("--cases", help="a cases.jsonl file instead of questions")
    parser.add_argument("--engine", choices=["auto", "transformers", "vllm"], default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--set", nargs="*", default=[], help="config overrides, e.g. infer.max_tokens=32")
    args = parser.parse_args(argv)
    try:
        cfg = load_config_with_cli_overrides(args.config, args.set)
        prompts = ([c["messages"] for c in load_cases(args.cases)] if args.cases else
                   [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}] for q in args.questions])
    except (ConfigError, DataError) as exc:
        print(f"错误：{exc}", file=sys.stderr)
        return 2
    if not prompts:
        parser.error("give at least one question or --cases")
    engine = load_engine(cfg, args.adapter, engine=args.engine)
    for prompt, result in zip(prompts, engine.generate(prompts, batch_size=args.batch_size)):
        print(f"问：{prompt[-1]['content']}\n答：{result.text}\n   [{engine.name}] {result.output_tokens} tokens, "
              f"{result.latency_s:.2f} s, {result.tokens_per_s:.1f} tokens/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
