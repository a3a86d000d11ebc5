"""The ``llmcourse`` command line.

Usage::

    llmcourse doctor
    llmcourse prepare-model gemma3-270m [--force]
    llmcourse check-config day1/configs/gemma3-270m_lora_sft.yaml lora.r=8
    llmcourse data-summary day1/data/faq_train.jsonl
    llmcourse data build day3/config.yaml [data.split_seed=7]   # raw files -> train/val/test + report
    llmcourse data add-context data/train.jsonl --out data/train_rag.jsonl   # rows with retrieved passages (RAFT)
    llmcourse train day1/configs/gemma3-270m_lora_sft.yaml train.max_steps=20 train.output_dir=runs/try1 [--resume]
    llmcourse evaluate runs/try1 [--base] [--limit 20]
    llmcourse run-course --out outputs --days day1 [--profile ci]
    llmcourse serve day3/config.yaml [serve.port=8001]      # OpenAI-compatible API; key: LLMCOURSE_API_KEY
    llmcourse chat day3/config.yaml "退货期多久？" "那超过了怎么办？"   # multi-turn against a running server
    llmcourse student --out learner                         # the learner edition of every day (make student)
    llmcourse grade release|collect|autograde|feedback|export ...   # instructors; see grading/README.md
    llmcourse hub start|release|collect|return-feedback ...         # the course hub (JupyterHub + nbgrader exchange)

Overrides are ``section.field=value`` and use the config's field names. A mistake the user can fix
(a :class:`llmcourse.errors.CourseError`: config, data, paths, a missing run or package) and a usage
error are printed as one message, ``错误：…``, with exit status 2; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys

from llmcourse.config import load_config_with_cli_overrides
from llmcourse.errors import CourseError, InputError


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors in the CLI's one format: ``错误：…`` first, then the usage; exit status 2."""

    def error(self, message: str):
        self.exit(2, f"错误：{message}\n{self.format_usage()}")


def _parser() -> argparse.ArgumentParser:
    # subparsers are built with the parent's class, so every level reports usage errors the same way
    parser = _Parser(prog="llmcourse", description="LoRA fine-tuning course helpers")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("doctor", help="show the lane, versions, engines and what to fix")
    prepare = sub.add_parser("prepare-model", help="convert a stand-in model once into the cache")
    prepare.add_argument("name")
    prepare.add_argument("--force", action="store_true", help="convert again even if prepared")
    check = sub.add_parser("check-config", help="validate a config and print it resolved")
    check.add_argument("config")
    check.add_argument("overrides", nargs="*", help="section.field=value")
    summary = sub.add_parser("data-summary", help="validate a chat JSONL file and summarise it")
    summary.add_argument("path")
    data = sub.add_parser("data", help="dataset steps").add_subparsers(dest="data_command", required=True)
    build = data.add_parser("build", help="raw business files -> train/val/test JSONL, rejected rows, data report")
    build.add_argument("config")
    build.add_argument("overrides", nargs="*", help="section.field=value, e.g. data.split_seed=7")
    context = data.add_parser("add-context", help="give 1 question in N per fact retrieved passages (RAFT-style rows)")
    context.add_argument("path", help="a chat JSONL whose rows carry fact_id")
    context.add_argument("--out", help="where to write (default: PATH itself, replaced atomically)")
    context.add_argument("--add", action="store_true", help="append copies with passages instead of replacing rows")
    context.add_argument("--every", type=int, default=3, help="one copy per this many questions of a fact")
    context.add_argument("--k", type=int, default=3, help="passages per copy, as the retrieval arm's top_k")
    train = sub.add_parser("train", help="LoRA fine-tuning; writes the run artifacts")
    train.add_argument("config")
    train.add_argument("overrides", nargs="*", help="section.field=value, e.g. lora.r=8 train.max_steps=20")
    train.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    course = sub.add_parser("run-course", help="execute the course notebooks with papermill into OUT/<day>/")
    course.add_argument("--out", default="outputs")
    course.add_argument("--days", nargs="*", default=None, help="default: every day")
    course.add_argument("--profile", choices=["cpu", "ci"], default="cpu", help="notebook parameters to use")
    serve = sub.add_parser("serve", help="OpenAI-compatible chat API for the fine-tuned model (blocks)")
    serve.add_argument("config")
    serve.add_argument("overrides", nargs="*", help="section.field=value, e.g. serve.port=8001")
    chat = sub.add_parser("chat", help="a multi-turn conversation with a running server (openai client)")
    chat.add_argument("config")
    chat.add_argument("questions", nargs="+", help="one question per turn; each sees the earlier turns")
    chat.add_argument("--base-url", default=None, help="default: http://<serve.host>:<serve.port>/v1")
    evaluate = sub.add_parser("evaluate", help="key-fact accuracy of a run on its eval file")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--base", action="store_true", help="also evaluate the base model")
    evaluate.add_argument("--limit", type=int, default=None, help="only the first N eval questions")
    student = sub.add_parser("student", help="build the learner edition (no solutions, no hidden tests) into OUT/<day>/")
    student.add_argument("--out", default="learner")
    student.add_argument("--days", nargs="*", default=None, help="default: every day")
    from llmcourse.grading.workflow import add_grade_commands
    add_grade_commands(sub)
    from llmcourse.grading.hub import add_hub_commands
    add_hub_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)  # a usage error exits 2 here (argparse's own message)
    try:
        return _run(args)
    # Every mistake a user can fix is a CourseError; anything else is a bug and keeps its traceback.
    except CourseError as exc:
        print(f"错误：{exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.command == "doctor":
        from llmcourse.env.doctor import doctor
        doctor()
        return 0
    if args.command == "prepare-model":
        from llmcourse.env.prepare import prepare_model
        prepare_model(args.name, force=args.force)
        return 0
    if args.command == "check-config":
        print(load_config_with_cli_overrides(args.config, args.overrides).to_yaml())
        return 0
    if args.command == "data-summary":
        from llmcourse.data.jsonl import load_chat_jsonl, summarize
        print(json.dumps(summarize(load_chat_jsonl(args.path)), ensure_ascii=False, indent=2))
        return 0
    if args.command == "data" and args.data_command == "add-context":
        from llmcourse.data.context_rows import add_context_rows
        print(json.dumps(add_context_rows(args.path, args.out, every=args.every, k=args.k, add=args.add), ensure_ascii=False))
        return 0
    if args.command == "data":  # build
        cfg = load_config_with_cli_overrides(args.config, args.overrides)  # a bad config fails before heavy imports
        from llmcourse.data.build import build_dataset_from_config
        print(build_dataset_from_config(cfg).summary_line())
        return 0
    if args.command == "train":
        cfg = load_config_with_cli_overrides(args.config, args.overrides)  # before importing torch and TRL
        from llmcourse.training.run import train  # train() reads the data before it loads or imports a model
        from llmcourse.training.parallel import is_main_process, processes
        result = train(cfg, resume=args.resume)
        losses = result.losses
        if is_main_process():  # under torchrun every process gets here; one summary
            print(f"训练完成：{result.steps} 步，引擎 {result.engine}，设备 {result.device}，{processes()} 个进程；"
                  f"loss {losses[0]:.3f} → {losses[-1]:.3f}；产物在 {result.output_dir}")
        return 0
    if args.command == "run-course":
        from llmcourse.notebooks.run import CI_PARAMETERS, CPU_PARAMETERS, DAYS, run_day
        parameters = CPU_PARAMETERS if args.profile == "cpu" else CI_PARAMETERS
        unknown = [day for day in args.days or [] if day not in DAYS]
        if unknown:  # checked before any day runs: a typo in the last day should not cost the first ones
            raise InputError(f"--days 里有未知的课程日 {', '.join(unknown)}；可选：{' '.join(DAYS)}")
        for day in args.days or DAYS:
            run_day(day, args.out, parameters.get(day))
        return 0
    if args.command == "serve":
        cfg = load_config_with_cli_overrides(args.config, args.overrides)
        from llmcourse.serving.server import serve
        serve(cfg)
        return 0
    if args.command == "chat":
        cfg = load_config_with_cli_overrides(args.config, [])
        from llmcourse.serving.chat import print_conversation
        print_conversation(cfg, args.questions, base_url=args.base_url)
        return 0
    if args.command == "evaluate":
        from llmcourse.evaluation.ask import evaluate_run
        report = evaluate_run(args.run_dir, include_base=args.base, limit=args.limit)
        print(json.dumps(report["summary"], ensure_ascii=False, indent=2))
        return 0
    if args.command == "student":
        from llmcourse.grading.workflow import Course, GradingError
        from llmcourse.grading.learner_edition import build
        try:
            out = build(Course(), args.out, args.days)
        except GradingError as exc:
            print(f"错误：{exc}", file=sys.stderr)
            return 2
        print(f"学员版已生成：{out}/（从 {out}/day1/01_concepts.ipynb 开始）")
        return 0
    if args.command == "grade":
        from llmcourse.grading.workflow import run_grade_command
        return run_grade_command(args)
    if args.command == "hub":
        from llmcourse.grading.hub import run_hub_command
        return run_hub_command(args)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
