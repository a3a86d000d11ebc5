"""benchmarks/run_all.py (make bench): parts in their own processes, a failed or missing part never stops the run."""
import importlib.util
import json
import sys

from conftest import ROOT


def load_runner(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "benchmarks" / "run_all.py")
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    scripts = tmp_path / "benchmarks"
    scripts.mkdir()
    (scripts / "good.py").write_text('import json\nprint("working")\nprint("RESULT " + json.dumps({"goals": [{"what": '
                                     '"x vs y", "value": "5.0x", "goal": ">= 4x", "met": True}], "summary": "fine"}))\n')
    (scripts / "bad.py").write_text('import sys\nprint("RESULT {}")\nsys.exit(3)\n')
    (scripts / "silent.py").write_text('print("no result line")\n')
    (tmp_path / "README.md").write_text("# x\n\n## Measured\n<!-- bench:start -->\nold\n<!-- bench:end -->\ntail\n")
    monkeypatch.setattr(runner, "ROOT", tmp_path)
    monkeypatch.setattr(runner, "PYTHON", sys.executable)
    monkeypatch.setattr(runner, "PARTS", [("good", "good.py", [], 60), ("bad", "bad.py", [], 60),
                                          ("silent", "silent.py", [], 60), ("missing", "api_load.py", [], 60)])
    return runner


def test_every_part_is_reported_and_the_tables_written(tmp_path, monkeypatch, capsys):
    runner = load_runner(tmp_path, monkeypatch)
    monkeypatch.setattr(sys, "argv", ["run_all", "--out", str(tmp_path / "out")])
    runner.main()
    report = json.loads((tmp_path / "out" / "bench.json").read_text())
    parts = report["parts"]
    assert {name: part["status"] for name, part in parts.items()} == \
        {"good": "ok", "bad": "failed", "silent": "failed", "missing": "skipped"}
    assert parts["good"]["result"]["summary"] == "fine" and parts["bad"]["reason"] == "exit code 3"
    assert report["machine"]["cores"] >= 1 and report["machine"]["torch"] and report["date"]
    table = (tmp_path / "out" / "bench.md").read_text()
    assert "| x vs y | 5.0x | >= 4x | yes |" in table and "api_load.py not found" in table
    assert "  working" in capsys.readouterr().out  # each part's own report is streamed


def test_readme_table_is_replaced_between_the_markers_only(tmp_path, monkeypatch):
    runner = load_runner(tmp_path, monkeypatch)
    assert runner.update_readme("| new |\n", tmp_path / "README.md")
    assert (tmp_path / "README.md").read_text() == \
        "# x\n\n## Measured\n<!-- bench:start -->\n| new |\n<!-- bench:end -->\ntail\n"
    (tmp_path / "README.md").write_text("no markers\n")
    assert not runner.update_readme("| new |\n", tmp_path / "README.md")
