"""The learner's journey in a real browser: the learner edition of the Day 1 code notebook opened in
JupyterLab (Playwright, Debian's headless Chromium), the answers typed into the skeleton cells, Run All,
then the instructor's collect -> autograde -> export. The typed notebook earns every automatic point;
a classmate who hands in the untouched edition earns 0, and both are graded without a grader error."""
from __future__ import annotations

import csv
import shutil

import pytest
from conftest import CHROMIUM_FLAGS, ROOT, jupyter_lab
from llmcourse.grading.workflow import Course, Settings, autograde, collect, export, release

pytestmark = pytest.mark.slow
NOTEBOOK = "02_lora_training.ipynb"
# What the learner types: the skeleton's five blanks filled in (30 steps: the exercise's minimum).
CONFIG_ANSWER = '''from llmcourse.notebooks.display import save_text

config_text = """model: {name: gemma3-270m}
data: {train_file: data/faq_train.jsonl, eval_file: data/faq_test.jsonl}
lora: {r: 8, lora_alpha: 16, lora_dropout: 0.05}
train: {output_dir: runs/my_first_lora, max_steps: 30, learning_rate: 2.0e-3, assistant_only_loss: true}
"""
save_text(config_path, config_text)'''
STATEMENT_ANSWER = '''statement = """
目标：让只会续写的小模型按云杉智能家居的客服口径回答退换货、保修和热线等问题。
数据：课程提供的客服 FAQ，对话格式的 JSONL，每行一组 system/user/assistant 消息，45 条事实各有 3 种问法。
观察：训练 30 步后 loss 从 3 左右降到 1 以下，训练前基座模型答非所问，训练后开始说出关键数字。
"""'''


@pytest.fixture(scope="module")
def handed_in(tmp_path_factory):
    """A scratch course, its Day 1 release, and two learners' folders: one typed in the browser, one untouched."""
    from llmcourse.notebooks.run import SKIP
    from playwright.sync_api import sync_playwright

    scratch = tmp_path_factory.mktemp("journey")
    shutil.copytree(ROOT / "day1", scratch / "course" / "day1", ignore=SKIP)
    course = Course(scratch / "course")
    released = release(course, "day1")
    inbox = scratch / "inbox"
    typed, untouched = inbox / "s01_browser", inbox / "s02_untouched"
    shutil.copytree(released, typed)
    shutil.copytree(released, untouched)
    if not shutil.which("chromium"):
        pytest.fail("Debian's chromium is missing: run .ci/install-chromium (make test does)")
    with jupyter_lab(typed, scratch) as (url, token), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(f"{url}/lab/tree/{NOTEBOOK}?token={token}")
        page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=120_000)
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
        for anchor, text in (("config_text = ", CONFIG_ANSWER), ("statement = ", STATEMENT_ANSWER)):
            cell = page.locator(".jp-CodeCell").filter(has=page.locator(".cm-content", has_text=anchor)).first
            cell.locator(".cm-content").click()
            page.keyboard.press("Control+A")
            page.keyboard.insert_text(text)  # as typed, without the editor's auto-closing brackets
        page.keyboard.press("Control+S")
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        page.get_by_text("共 30 步").first.wait_for(timeout=900_000)
        page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(timeout=600_000)
        page.keyboard.press("Control+S")
        page.wait_for_timeout(2000)
        page.screenshot(path=str(scratch / "journey.png"), full_page=False)
        browser.close()
    return course, inbox


def test_the_typed_learner_edition_earns_every_automatic_point(handed_in):
    from nbgrader.api import Gradebook

    course, inbox = handed_in
    typed = inbox / "s01_browser"
    assert (typed / "my_lora_sft.yaml").read_text(encoding="utf-8").startswith("model: {name: gemma3-270m}")
    assert (typed / "runs" / "my_first_lora" / "adapter" / "adapter_config.json").is_file()
    assert all(r.ok for r in collect(course, "day1", inbox))
    graded = autograde(course, "day1", Settings(workers=2, cell_timeout=120, notebook_timeout=600))
    assert {g.student: g.status for g in graded} == {"s01_browser": "ok", "s02_untouched": "ok"}
    with Gradebook(course.db_url, course.course_id) as gradebook:
        notebook = gradebook.find_submission_notebook(NOTEBOOK.removesuffix(".ipynb"), "day1", "s01_browser")
        assert notebook.max_score > 0 and notebook.score == notebook.max_score, [
            (g.name, g.score, g.max_score) for g in notebook.grades]
        untouched = gradebook.find_submission("day1", "s02_untouched")
        assert untouched.max_score > 0 and untouched.score == 0
    paths = export(course)
    with paths["csv"].open(encoding="utf-8-sig") as handle:
        rows = {row["student"]: row for row in csv.DictReader(handle)}
    assert float(rows["s02_untouched"]["total"]) == 0
    assert float(rows["s01_browser"]["total"]) > 0
