from llmcourse.artifacts import COURSE_ROOT as ROOT
from llmcourse.notebooks.run import CI_PARAMETERS, CPU_PARAMETERS, SKIP, copy_day


def test_copy_day_copies_sources_and_leaves_learner_runs_behind(tmp_path):
    folder = copy_day("day1", tmp_path)
    assert (folder / "02_lora_training.ipynb").exists() and (folder / "data" / "faq_train.jsonl").exists()
    names = ["runs", "01_concepts.ipynb", "01_concepts.executed.ipynb", ".ipynb_checkpoints", "data"]
    assert SKIP(str(ROOT / "day1"), names) == {"runs", "01_concepts.executed.ipynb", ".ipynb_checkpoints"}


def test_parameters_name_real_notebooks():
    for profile in (CPU_PARAMETERS, CI_PARAMETERS):
        for day, notebooks in profile.items():
            for name in notebooks:
                assert (ROOT / day / name).exists()
