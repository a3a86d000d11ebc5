"""Day 2's no-code track: the learner's test cases, base vs fine-tuned and human scores, in forms (ipywidgets).

Usage (one notebook cell per step, day2/05_no_code.ipynb)::

    from llmcourse.notebooks.form_day2 import EvaluationForm
    form = EvaluationForm(adapter_dir="../day1/runs/no_code/adapter", max_cases=None, max_tokens=64)
    form.show_cases()        # ≥ 5 questions with key facts  -> no_code_submission/my_cases.jsonl
    form.show_run()          # base vs fine-tuned on them + the default cases -> runs/no_code_benchmark/
    form.show_scores()       # a 1–5 score per answer        -> runs/no_code_benchmark/human_scores.csv
    form.show_results()      # summary table and plots (as day2/03_benchmark draws them)
    form.autofill("cases")   # what a learner would type and click, for papermill (also "run", "scores")

The artifacts are the code track's (day2/01_inference + 03_benchmark), written by the same functions and
graded by the same checks: ``my_cases.jsonl`` (:func:`llmcourse.evaluation.cases.save_cases`, ``check_cases``);
``cases.jsonl``, ``generations.jsonl``, ``benchmark.csv``, ``summary.md`` and the plots
(:func:`llmcourse.evaluation.benchmark.benchmark_or_reuse` / ``plot_benchmark``, ``check_benchmark``); and
``human_scores.csv`` (:mod:`llmcourse.evaluation.scoring`'s blind sheet: shuffled, 回答 A / B, the models revealed
once every answer has a score; ``check_human_scores``). They live in
the no-code folders (``no_code_submission/``, ``runs/no_code_benchmark/``) so that a learner who does
both tracks keeps both.

Everything is saved as it is clicked and reloaded when the notebook is opened again, so grading
reads files: under nbgrader (``NBGRADER_EXECUTION``) nothing is generated again, the saved benchmark is
reused and the saved cases and scores are shown. Every button is also a method (``set_cases``,
``save_cases``, ``run``, ``set_scores``, ``save_scores``) for tests.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from llmcourse.artifacts import ADAPTER_CONFIG, BENCHMARK_CSV, HUMAN_SCORES, RUN_CONFIG

DEFAULT_CASES = "data/default_cases.jsonl"
# Where Day 1 runs live, seen from day2/: the no-code form's run first, then the code track's.
DAY1_ADAPTERS = ("../day1/runs/no_code/adapter", "../day1/runs/my_first_lora/adapter")
MIN_CASES = 5
PLOTS = ("quality.png", "latency.png", "memory.png")   # what llmcourse.evaluation.benchmark.plot_benchmark draws
# What a learner could type: new wordings of trained facts (the code track's model answer).
EXAMPLE_CASES = [("扫地机器人充满电能扫多久？", ["180分钟"]), ("门锁最多能存几个指纹？", ["100个"]),
                 ("智能音箱怎么叫醒？", ["小杉小杉"]), ("空气净化器滤网多久换一次？", ["6个月"]),
                 ("装门锁要开孔的话收钱吗？", ["50元"])]
SCORE_LABELS = "5 = 准确完整　4 = 基本正确　3 = 部分正确　2 = 相关但错误　1 = 答非所问或胡言乱语"
_SPLIT = re.compile(r"[,，、;；\n]+")


def split_facts(text: str) -> list[str]:
    """Key facts as typed in one box: separated by commas, 顿号, semicolons or new lines."""
    return [fact.strip() for fact in _SPLIT.split(text or "") if fact.strip()]


def find_adapter(preferred: str | Path) -> Path | None:
    """``preferred`` if it holds an adapter, else the first Day 1 run that does (None: no Day 1 run yet)."""
    for candidate in (Path(preferred), *map(Path, DAY1_ADAPTERS)):
        if (candidate / ADAPTER_CONFIG).is_file():
            return candidate
    return None


def _escape(text: str) -> str:
    import html
    return html.escape(text or "").replace("\n", "<br>")


class EvaluationForm:
    def __init__(self, adapter_dir: str | Path = DAY1_ADAPTERS[0], submission_dir: str | Path = "no_code_submission",
                 out_dir: str | Path = "runs/no_code_benchmark", default_cases: str | Path = DEFAULT_CASES,
                 max_cases: int | None = None, max_tokens: int = 64, device: str = "auto"):
        import ipywidgets as w

        self.adapter_dir, self.submission, self.out = Path(adapter_dir), Path(submission_dir), Path(out_dir)
        self.cases_file, self.scores_file = self.submission / "my_cases.jsonl", self.out / HUMAN_SCORES
        self.default_cases, self.max_cases = Path(default_cases), max_cases
        self.max_tokens, self.device = max_tokens, device
        self.sheet = None
        # step: cases
        self.case_rows: list[tuple] = []
        self.case_box = w.VBox()
        self.add_row = w.Button(description="再加一个用例", icon="plus")
        self.save_cases_button = w.Button(description="保存用例", button_style="success", icon="save")
        self.cases_message = w.HTML()
        self.add_row.on_click(lambda button: self._add_case_row())
        self.save_cases_button.on_click(lambda button: self.save_cases())
        saved = self._saved_cases()
        for question, facts in saved:
            self._add_case_row(question, "、".join(facts))
        for _ in range(MIN_CASES - len(saved)):
            self._add_case_row()
        if saved:
            self.cases_message.value = f"已读取保存的 {len(saved)} 个用例：{self.cases_file}"
        # step: run
        self.run_button = w.Button(description="运行对比", button_style="success", icon="play")
        self.run_status = w.HTML("尚未运行")
        self.run_output = w.Output()
        self.run_button.on_click(lambda button: self.run())
        # step: scores
        self.score_box = w.VBox()
        self.score_buttons: list = []
        self.save_scores_button = w.Button(description="保存打分", button_style="success", icon="save")
        self.score_message = w.HTML()
        self.score_output = w.Output()
        self.save_scores_button.on_click(lambda button: self.save_scores())
        self.refresh_scores()

    # ---- step 2: the learner's cases ----
    def _add_case_row(self, question: str = "", facts: str = "") -> None:
        import ipywidgets as w
        number = len(self.case_rows) + 1
        row = (w.Text(value=question, description=f"问题 {number}", placeholder="换一种问法问训练过的事实",
                      layout=w.Layout(width="52%")),
               w.Text(value=facts, description="关键事实", placeholder="好回答必须出现的词，如 180分钟；多个用顿号隔开",
                      layout=w.Layout(width="44%")))
        self.case_rows.append(row)
        self.case_box.children = [w.HBox(list(r)) for r in self.case_rows]

    def _saved_cases(self) -> list[tuple[str, list[str]]]:
        from llmcourse.evaluation.cases import load_cases, question_of
        from llmcourse.data.jsonl import DataError
        if not self.cases_file.is_file():
            return []
        try:
            return [(question_of(case), case.get("key_facts") or []) for case in load_cases(self.cases_file)]
        except DataError as exc:
            self.cases_message.value = f"<pre style='color:#c00'>{_escape(str(exc))}</pre>"
            return []

    def set_cases(self, cases: list[tuple[str, list[str] | str]]) -> None:
        """Type questions and key facts into the rows (adding rows as needed), as a learner would."""
        while len(self.case_rows) < len(cases):
            self._add_case_row()
        for (question_box, facts_box), (question, facts) in zip(self.case_rows, cases):
            question_box.value = question
            facts_box.value = facts if isinstance(facts, str) else "、".join(facts)

    def cases(self) -> tuple[list[dict], list[str]]:
        """The rows as cases (the code track's shape) and the problems of incomplete rows."""
        from llmcourse.evaluation.cases import load_cases
        system = load_cases(self.default_cases)[0]["messages"][0]
        system = [system] if system["role"] == "system" else []
        cases, problems = [], []
        for number, (question_box, facts_box) in enumerate(self.case_rows, start=1):
            question, facts = question_box.value.strip(), split_facts(facts_box.value)
            if not question and not facts:
                continue
            if not question:
                problems.append(f"第 {number} 个用例：写了关键事实，但还没有写问题")
            elif not facts:
                problems.append(f"第 {number} 个用例：请至少写一个关键事实（好回答里必须原样出现的词，比如“180分钟”）")
            else:
                cases.append({"case_id": f"mine-{number}", "kind": "faq", "key_facts": facts,
                              "messages": [*system, {"role": "user", "content": question}]})
        return cases, problems

    def save_cases(self) -> Path | None:
        """Save the complete rows as ``my_cases.jsonl`` (never an empty file over saved cases)."""
        from llmcourse.evaluation.cases import save_cases
        cases, problems = self.cases()
        if not cases:
            self.cases_message.value = "<span style='color:#c00'>还没有完整的用例：每个用例要写问题和至少一个关键事实</span>"
            return None
        self.submission.mkdir(parents=True, exist_ok=True)
        path = save_cases(self.cases_file, cases)
        notes = problems + ([f"现在只有 {len(cases)} 个完整的用例，至少需要 {MIN_CASES} 个"] if len(cases) < MIN_CASES else [])
        color = "#c00" if notes else "#080"
        self.cases_message.value = (f"<span style='color:{color}'>已保存 {len(cases)} 个用例到 {path}"
                                    + ("；" + "；".join(notes) if notes else "") + "</span>")
        return path

    def show_cases(self) -> None:
        import ipywidgets as w
        from IPython.display import display
        display(w.VBox([w.HTML("<h4>我的测试用例（至少 5 个）</h4>"), self.case_box,
                        w.HBox([self.add_row, self.save_cases_button]), self.cases_message]))

    # ---- step 3: base vs fine-tuned ----
    def all_cases(self) -> list[dict]:
        """The learner's cases first (they are what the score sheet asks about), then the default ones."""
        from llmcourse.evaluation.cases import load_cases
        return load_cases(self.cases_file) + load_cases(self.default_cases)[: self.max_cases]

    def run(self):
        """Both models answer every case (the code track's benchmark); under nbgrader the saved one is reused."""
        from llmcourse.evaluation.benchmark import benchmark_or_reuse
        from llmcourse.config import load_config
        from llmcourse.notebooks.display import show_side_by_side
        from llmcourse.artifacts import in_grading

        if not self.cases_file.is_file():
            self.run_status.value = "<span style='color:#c00'>还没有保存用例：请先完成上一步，点“保存用例”</span>"
            return None
        adapter = find_adapter(self.adapter_dir)
        if adapter is None and not in_grading():
            self.run_status.value = (f"<span style='color:#c00'>找不到第 1 天训练出的适配器 {self.adapter_dir}："
                                     "请先完成 day1/03_no_code.ipynb 的训练（或把 adapter_dir 改成你的适配器）</span>")
            return None
        self.run_status.value = (f"运行中……（适配器：{adapter}；CPU 上每个模型约几十秒到几分钟）" if not in_grading()
                                 else "评分模式：复用已保存的结果")
        with self.run_output:
            cfg = None if in_grading() else load_config(adapter.parent / RUN_CONFIG, **{
                "infer.max_tokens": self.max_tokens, "model.device": self.device})
            table = benchmark_or_reuse(cfg, self.all_cases(), adapter, self.out, engines=["transformers"])
            show_side_by_side(self.out, count=len(self._my_ids()) + 3)
        self.run_status.value = (f"完成：{table.case_id.nunique()} 个用例 × {table.model.nunique()} 个模型，"
                                 f"结果在 {self.out}/（下面是前几个用例的并排对比）")
        self.refresh_scores()
        return table

    def show_run(self) -> None:
        import ipywidgets as w
        from IPython.display import display
        display(w.VBox([w.HBox([self.run_button, self.run_status]), self.run_output]))

    # ---- step 4: human scores ----
    def _my_ids(self) -> list[str]:
        from llmcourse.evaluation.cases import load_cases
        from llmcourse.data.jsonl import DataError
        try:
            return [case["case_id"] for case in load_cases(self.cases_file)]
        except DataError:
            return []

    def refresh_scores(self) -> None:
        """The blind score sheet of the learner's cases (:func:`llmcourse.evaluation.scoring.make_score_sheet`), one
        1–5 choice per answer; scores already saved come back while the answer's text is unchanged."""
        import ipywidgets as w
        import pandas as pd

        from llmcourse.evaluation.cases import load_cases
        from llmcourse.data.jsonl import DataError
        from llmcourse.evaluation.scoring import make_score_sheet, read_answers

        try:
            answers = read_answers(self.out)
            mine = load_cases(self.cases_file)
        except (FileNotFoundError, DataError):
            answers, mine = [], []
        answered = {a["case_id"] for a in answers}
        scored_cases = [case for case in mine if case["case_id"] in answered]
        if not scored_cases:
            self.sheet, self.score_buttons, self.score_box.children = None, [], []
            self.score_message.value = "还没有可以打分的回答：先完成上面两步（保存用例、运行对比），再运行这个单元格"
            return
        self.sheet = make_score_sheet([a for a in answers if a["case_id"] in answered], scored_cases)
        saved = {}
        if self.scores_file.is_file():  # same cases and answers give the same sheet (a fixed seed)
            old = pd.read_csv(self.scores_file, encoding="utf-8-sig", keep_default_na=False, na_values=[""])
            saved = {(row.answer_id, row.answer): int(row.human_score) for row in old.itertuples()
                     if "answer_id" in old and pd.notna(row.human_score)}
        self.score_buttons, rows, case_seen = [], [], None
        for row in self.sheet.itertuples():
            score = saved.get((row.answer_id, row.answer))
            button = w.ToggleButtons(options=[(str(s), s) for s in range(1, 6)], value=score,
                                     style={"button_width": "36px"})
            self.score_buttons.append(button)
            if row.case_id != case_seen:  # the question once, its answers under it
                case_seen = row.case_id
                facts = "、".join(row.key_facts) if isinstance(row.key_facts, list) else row.key_facts
                rows.append(w.HTML(f"<hr><b>{_escape(row.question)}</b>（关键事实：{_escape(facts) or '—'}）"))
            rows.append(w.HBox([w.HTML(f"<b>{row.answer_label}</b>", layout=w.Layout(width="70px")),
                                w.HTML(f"<div style='background:#f6f6f6;padding:4px'>{_escape(row.answer) or '（空回答）'}</div>",
                                       layout=w.Layout(width="60%")), button]))
        self.score_box.children = rows
        skipped = len(mine) - len(scored_cases)
        done = sum(b.value is not None for b in self.score_buttons)
        self.score_message.value = (f"共 {len(self.score_buttons)} 个回答（哪个回答来自哪个模型先隐藏，全部打分并保存后揭晓），"
                                    f"已打分 {done} 个" + (f"；有 {skipped} 个用例还没有回答：改过用例后请重新运行对比"
                                                         if skipped else ""))

    def set_scores(self, scores: list[int | None]) -> None:
        """Click a score for each answer, in the sheet's order."""
        for button, score in zip(self.score_buttons, scores):
            button.value = score

    def save_scores(self) -> Path | None:
        """Save the sheet as ``human_scores.csv`` (:func:`llmcourse.evaluation.scoring.save_score_sheet`; unscored rows
        stay empty, nothing is lost) and, once every answer has a score, reveal the models."""
        from IPython.display import display

        from llmcourse.evaluation.scoring import reveal_scores, save_score_sheet
        if self.sheet is None:
            self.score_message.value = "<span style='color:#c00'>还没有可以打分的回答：先完成上面两步</span>"
            return None
        scores = [b.value for b in self.score_buttons]
        with contextlib.redirect_stdout(io.StringIO()):  # the form says it itself, below
            path = save_score_sheet(self.sheet, self.scores_file, scores=scores)
        missing = scores.count(None)
        if missing:
            self.score_message.value = f"<span style='color:#c00'>已保存到 {path}；还有 {missing} 个回答没有打分</span>"
            return path
        self.score_output.clear_output()
        with self.score_output:
            means = reveal_scores(path)
            display(means)
        summary = "，".join(f"{model} {row['人工分均值']}" for model, row in means.iterrows()) if means is not None else ""
        self.score_message.value = f"<span style='color:#080'>已保存到 {path}。揭晓：人工平均分 {summary}</span>"
        return path

    def show_scores(self) -> None:
        import ipywidgets as w
        from IPython.display import display
        display(w.VBox([w.HTML(f"<p>{SCORE_LABELS}</p>"), self.score_box, self.save_scores_button, self.score_message,
                        self.score_output]))

    # ---- step 5: table and plots ----
    def show_results(self) -> None:
        """The summary table and the three plots of day2/03_benchmark, from the saved benchmark."""
        import pandas as pd
        from IPython.display import Image, Markdown, display

        from llmcourse.evaluation.benchmark import plot_benchmark, summary_table

        csv = self.out / BENCHMARK_CSV
        if not csv.is_file():
            print(f"还没有结果 {csv}：先完成“运行对比”那一步，再运行这个单元格")
            return
        table = pd.read_csv(csv)
        display(Markdown(summary_table(table)))
        plots = [self.out / name for name in PLOTS]
        # The plots follow benchmark.csv: drawn again only when it is newer (so grading leaves the files alone).
        if not all(p.is_file() and p.stat().st_mtime_ns >= csv.stat().st_mtime_ns for p in plots):
            plots = plot_benchmark(table, self.out)
        for path in plots:
            display(Image(filename=str(path)))

    # ---- papermill ----
    def autofill(self, step: str, enabled: bool = True) -> None:
        """Do what a learner would at ``step`` (cases / run / scores); nothing unless ``enabled``."""
        if not enabled:
            return
        if step == "cases":
            self.set_cases(EXAMPLE_CASES)
            self.save_cases()
        elif step == "run":
            self.run()
        elif step == "scores":
            from llmcourse.evaluation.cases import load_cases
            from llmcourse.evaluation.scoring import auto_score
            cases = {case["case_id"]: case for case in load_cases(self.cases_file)}
            # A reader's rough judgement: all key facts said scores 5, none scores 1.
            self.set_scores([1 + round(4 * auto_score(cases[row.case_id], row.answer)) for row in self.sheet.itertuples()]
                            if self.sheet is not None else [])
            self.save_scores()
        else:
            raise ValueError(f"unknown step {step!r}: cases, run or scores")
