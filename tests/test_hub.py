"""The course hub (llmcourse.grading.hub, grading/hub/): settings, the Z2JH values file, and a round trip.

The slow test starts JupyterHub on 127.0.0.1 (free ports) with three learners and an instructor and drives the
nbgrader exchange as the hub and nbgrader allow: the hub's REST API (a service token) starts every server;
nbgrader's assignment-list handlers in each learner's server fetch, submit and fetch feedback; the Jupyter
contents API reads what a learner fetched and writes their answers; the instructor side releases into and
collects from the exchange with nbgrader's exchange classes, and grades with the course's own autograde/feedback.
"""
from __future__ import annotations

import base64
import html
import json
import re
import socket
import time
from pathlib import Path

import pytest
import requests
import yaml
from conftest import ROOT
from llmcourse.errors import CourseError
from llmcourse.grading import hub
from llmcourse.grading.cohort import build_course, make_submission
from llmcourse.grading.learner_edition import CODE_STUB, audit
from llmcourse.grading.workflow import (
    Course,
    Settings,
    autograde,
    feedback,
    hidden_test_lines,
)

VALUES = ROOT / "grading" / "hub" / "values.yaml"
LEARNERS = {"ada": "correct", "ben": "partly", "cai": "empty"}  # the scripted answers of each learner
INSTRUCTOR = "teacher"


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


# ---------------------------------------------------------------------------------------------- fast

def test_values_file_parses_and_has_the_promised_keys():
    text = VALUES.read_text(encoding="utf-8")
    assert "NOT RUN HERE" in text.splitlines()[0]  # clearly on paper
    values = yaml.safe_load(text)
    singleuser, hub_values = values["singleuser"], values["hub"]
    assert singleuser["image"]["name"] and singleuser["image"]["tag"]
    exchange = [v for v in singleuser["storage"]["extraVolumes"] if v["name"] == "nbgrader-exchange"]
    assert exchange and exchange[0]["persistentVolumeClaim"]["claimName"]
    mounts = {m["name"]: m["mountPath"] for m in singleuser["storage"]["extraVolumeMounts"]}
    assert mounts["nbgrader-exchange"] == "/srv/nbgrader/exchange"
    gpu = [p for p in singleuser["profileList"] if p.get("kubespawner_override", {}).get("extra_resource_limits")]
    assert gpu and gpu[0]["kubespawner_override"]["extra_resource_limits"] == {"nvidia.com/gpu": "1"}
    groups = hub_values["config"]["JupyterHub"]["load_groups"]
    assert set(groups) == {"nbgrader-llmcourse", "formgrade-llmcourse"}
    assert groups["formgrade-llmcourse"]["users"] == hub_values["config"]["Authenticator"]["admin_users"]
    nbgrader_config = singleuser["extraFiles"]["nbgrader_config"]["stringData"]
    assert "JupyterHubAuthPlugin" in nbgrader_config and "path_includes_course = True" in nbgrader_config
    assert '"/srv/nbgrader/exchange"' in nbgrader_config
    compile(hub_values["extraConfig"]["llmcourse-roles"], "extraConfig", "exec")  # the hook is valid Python


def test_settings_precedence_yaml_env_flags(tmp_path, monkeypatch):
    path = tmp_path / "hub.yaml"
    path.write_text("port: 8100\nlearners: [a1, b2]\nstate_dir: state\n", encoding="utf-8")
    monkeypatch.delenv(hub.SETTINGS_ENV, raising=False)
    monkeypatch.setenv("LLMCOURSE_HUB_PORT", "8200")
    settings = hub.load_settings(path, instructor="prof")
    assert settings.port == 8200 and settings.learners == ["a1", "b2"] and settings.instructor == "prof"
    assert settings.state == (tmp_path / "state").resolve()  # relative to the YAML file
    assert settings.exchange_root == settings.state / "exchange"
    assert hub.load_settings(path, learners="x,y,z", port=8300).learners == ["x", "y", "z"]
    path.write_text("prot: 1\n", encoding="utf-8")
    with pytest.raises(CourseError, match="不认识的字段 prot"):
        hub.load_settings(path)


@pytest.mark.parametrize("change,message", [
    ({"learners": ["Alice"]}, "不能用"), ({"learners": ["a+b"]}, "不能用"), ({"learners": []}, "没有学员"),
    ({"learners": ["instructor"]}, "重复"), ({"hub_port": 8000}, "不同的端口"),
])
def test_settings_a_user_can_fix(change, message):
    settings = hub.HubSettings(**change)
    with pytest.raises(CourseError, match=message):
        hub.check_settings(settings)


def test_missing_proxy_says_how_to_install(tmp_path):
    with pytest.raises(hub.HubError, match="npm install"):
        hub.find_proxy(hub.HubSettings(proxy=str(tmp_path / "no-proxy")))


def test_learner_servers_lose_the_instructor_tools(tmp_path):
    settings = hub.prepare(hub.HubSettings(state_dir=str(tmp_path)))
    learner = json.loads((settings.config_dir("learner") / "jupyter_server_config.json").read_text())
    assert learner["ServerApp"]["jpserver_extensions"]["nbgrader.server_extensions.formgrader"] is False
    instructor = json.loads((settings.config_dir("instructor") / "jupyter_server_config.json").read_text())
    assert instructor["ServerApp"]["jpserver_extensions"] == {}
    config = (settings.config_dir("learner") / "nbgrader_config.py").read_text()
    assert "JUPYTERHUB_USER" in config and "path_includes_course = True" in config
    assert str(ROOT / "grading") in hub.user_environment(settings, "instructor")["JUPYTER_CONFIG_PATH"]
    assert str(ROOT / "grading") not in hub.user_environment(settings, "learner")["JUPYTER_CONFIG_PATH"]


# ---------------------------------------------------------------------------------------------- the round trip

class Client:
    """The hub's REST API and each user's server (contents API, nbgrader's handlers) with the operator token."""

    def __init__(self, settings):
        self.base = settings.url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"token {settings.api_token}"

    def hub(self, method, path, **kw):
        response = self.session.request(method, f"{self.base}/hub/api{path}", timeout=60, **kw)
        assert response.status_code < 400, (method, path, response.status_code, response.text[:500])
        return response.json() if response.content else None

    def user(self, name, method, path, **kw):
        response = self.session.request(method, f"{self.base}/user/{name}{path}", timeout=120, **kw)
        assert response.status_code < 400, (name, method, path, response.status_code, response.text[:500])
        return response.json() if response.content else None

    def assignments(self, name, action=None):
        """nbgrader's assignment list in the learner's server: GET the list or POST fetch|submit|fetch_feedback."""
        params = {"course_id": "llmcourse"}
        if action is None:
            result = self.user(name, "GET", "/assignments", params=params)
        else:
            result = self.user(name, "POST", f"/assignments/{action}", data={**params, "assignment_id": "day1"})
        assert result["success"], result
        return result["value"]

    def download(self, name, path, target: Path) -> None:
        """A folder of the user's server, byte for byte, through the contents API."""
        target.mkdir(parents=True, exist_ok=True)
        for entry in self.user(name, "GET", f"/api/contents/{path}", params={"content": 1})["content"]:
            if entry["type"] == "directory":
                self.download(name, entry["path"], target / entry["name"])
            else:
                item = self.user(name, "GET", f"/api/contents/{entry['path']}",
                                 params={"type": "file", "format": "base64", "content": 1})
                (target / entry["name"]).write_bytes(base64.b64decode(item["content"]))

    def upload(self, name, folder: Path, path: str, only=None) -> list[str]:
        """Every file of ``folder`` (or those ``only`` accepts) into ``path`` of the user's server, as Lab saves."""
        written = []
        for local in sorted(folder.rglob("*")):
            relative = local.relative_to(folder).as_posix()
            if local.is_dir() or (only and not only(relative)):
                continue
            for depth in range(1, len(local.relative_to(folder).parts)):
                parent = "/".join(local.relative_to(folder).parts[:depth])
                self.user(name, "PUT", f"/api/contents/{path}/{parent}", json={"type": "directory"})
            if local.suffix == ".ipynb":
                body = {"type": "notebook", "format": "json", "content": json.loads(local.read_text(encoding="utf-8"))}
            else:
                body = {"type": "file", "format": "base64", "content": base64.b64encode(local.read_bytes()).decode()}
            self.user(name, "PUT", f"/api/contents/{path}/{relative}", json=body)
            written.append(relative)
        return written

    def wait_ready(self, names, timeout=240):
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            ready = {n for n in names if self.hub("GET", f"/users/{n}")["servers"].get("", {}).get("ready")}
            if ready == set(names):
                return time.monotonic() - started
            time.sleep(1)
        raise AssertionError(f"servers not ready after {timeout} s: {set(names) - ready}")


def _login_status(settings, name, password) -> int:
    """The hub's login form as a browser posts it (with its _xsrf cookie); 302 = logged in."""
    browser = requests.Session()
    browser.get(f"{settings.url}/hub/login", timeout=30)
    response = browser.post(f"{settings.url}/hub/login", allow_redirects=False, timeout=30,
                            data={"username": name, "password": password, "_xsrf": browser.cookies.get("_xsrf")})
    return response.status_code


def _visible(page: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", page)).split())


def _score(page: str) -> float:
    """The notebook's total on nbgrader's feedback page ("Score: 17.0 / 26.0")."""
    match = re.search(r"Score:\s*([\d.]+)\s*/\s*([\d.]+)", _visible(page))
    assert match, _visible(page)[:300]
    return float(match.group(1))


@pytest.mark.slow
def test_hub_round_trip_release_fetch_submit_collect_autograde_feedback(tmp_path, monkeypatch):
    started = time.monotonic()
    monkeypatch.delenv(hub.SETTINGS_ENV, raising=False)
    course = Course(build_course(tmp_path / "course", "day1", trim=True))
    port, hub_port, proxy_port = _free_ports(3)
    settings = hub.load_settings(course_root=str(course.root), state_dir=str(tmp_path / "hub"), learners=list(LEARNERS),
                                 instructor=INSTRUCTOR, port=port, hub_port=hub_port, proxy_api_port=proxy_port)
    log_path = tmp_path / "jupyterhub.log"
    with open(log_path, "w", encoding="utf-8") as log:
        process = hub.start_hub(settings, log=log)  # a missing proxy or jupyterhub fails here, saying what to install
        try:
            up = hub.wait_until_up(settings, process)
            client = Client(settings)
            assert _login_status(settings, "ada", "wrong-password") == 403
            assert _login_status(settings, "ada", settings.learner_password) == 302
            assert _login_status(settings, INSTRUCTOR, settings.learner_password) == 403  # admins need theirs
            assert _login_status(settings, "mallory", settings.learner_password) == 403   # not on the list
            users = [*LEARNERS, INSTRUCTOR]
            spawn_started = time.monotonic()
            for name in users:
                client.hub("POST", f"/users/{name}/server")
            outbound = hub.release_to_exchange(course, settings, "day1")  # meanwhile: the instructor releases
            client.wait_ready(users)
            spawned = time.monotonic() - spawn_started
            assert set(client.hub("GET", f"/users/{INSTRUCTOR}")["groups"]) == {"formgrade-llmcourse"}
            # the instructor's server has the formgrader over the course; a learner's has not
            assert "formgrade" in client.session.get(f"{settings.url}/user/{INSTRUCTOR}/formgrader/manage_assignments",
                                                     timeout=60).text
            assert client.session.get(f"{settings.url}/user/ada/formgrader", timeout=60).status_code == 404
            disabled = {}  # JupyterLab's page config: the nbgrader tools each user's Lab leaves out
            for name in ("ada", INSTRUCTOR):
                page = client.session.get(f"{settings.url}/user/{name}/lab", timeout=60).text
                lab = json.loads(re.search(r'id="jupyter-config-data"[^>]*>(.*?)</script>', page, re.DOTALL).group(1))
                disabled[name] = {e for e in lab.get("disabledExtensions", []) if e.startswith("@jupyter/nbgrader")}
            assert disabled == {"ada": set(hub.LEARNER_ONLY_OFF["lab"]), INSTRUCTOR: set()}, disabled
            released = sorted(p.name for p in outbound.glob("*.ipynb"))
            assert released == ["01_concepts.ipynb", "02_lora_training.ipynb"]

            fetched_root = tmp_path / "fetched"
            for name in LEARNERS:
                listed = client.assignments(name)
                assert [(a["assignment_id"], a["status"]) for a in listed] == [("day1", "released")]
                fetched = [a for a in client.assignments(name, "fetch") if a["status"] == "fetched"]
                assert fetched and fetched[0]["path"] == "llmcourse/day1"
                client.download(name, "llmcourse/day1", fetched_root / name / "day1")
                for notebook in released:  # exactly the release: nbgrader's student version of the course
                    assert (fetched_root / name / "day1" / notebook).read_bytes() == (outbound / notebook).read_bytes()
                    assert CODE_STUB in (fetched_root / name / "day1" / notebook).read_text(encoding="utf-8")
                assert audit(course, fetched_root / name, days=["day1"]) == {}
            assert audit(course, course.root, days=["day1"])["solution"]  # the audit does see the answer key

            answered_root = tmp_path / "answered"
            for name, kind in LEARNERS.items():
                if kind == "empty":
                    continue  # submits the fetched notebooks unchanged
                answered = make_submission("correct", fetched_root / name / "day1", course.root / "day1",
                                           answered_root / name)
                # partly: the answers, but no training run (no log, no adapter)
                only = None if kind == "correct" else (lambda p: not p.startswith("runs/"))
                written = client.upload(name, answered, "llmcourse/day1", only=only)
                assert "01_concepts.ipynb" in written and any(p.startswith("runs/") for p in written) == (kind == "correct")
            for name in LEARNERS:
                submitted = [a for a in client.assignments(name, "submit") if a["status"] == "submitted"]
                assert submitted and submitted[0]["submissions"], submitted

            collected = hub.collect_from_exchange(course, settings, "day1")
            assert collected == sorted(LEARNERS)
            graded_at = time.monotonic()
            results = autograde(course, "day1", Settings(workers=2, cell_timeout=60, notebook_timeout=300))
            grading_s = time.monotonic() - graded_at
            assert {r.student: r.status for r in results} == {name: "ok" for name in LEARNERS}
            pages = feedback(course, "day1")
            assert len(pages) == 2 * len(LEARNERS)
            hub.return_feedback(course, settings, "day1")

            hidden = [line for nb in released for line in hidden_test_lines(course.root / "day1" / nb)]
            assert hidden  # the check below can fail: the source has hidden tests
            scores = {}
            for name in LEARNERS:
                listed = client.assignments(name, "fetch_feedback")
                submission = next(a for a in listed if a["status"] == "submitted")["submissions"][-1]
                assert submission["has_local_feedback"] and not submission["feedback_updated"], submission
                folder = submission["local_feedback_path"]  # relative to the learner's home, fetched into it
                assert folder.startswith("llmcourse/day1/feedback/")
                files = client.user(name, "GET", f"/api/contents/{folder}", params={"content": 1})["content"]
                assert sorted(f["name"] for f in files) == ["01_concepts.html", "02_lora_training.html"]
                total = 0.0
                for entry in files:
                    page = client.user(name, "GET", f"/api/contents/{entry['path']}",
                                       params={"type": "file", "format": "text", "content": 1})["content"]
                    leaked = [line for line in hidden if line in _visible(page)]
                    assert leaked == [], (name, entry["name"], leaked)
                    total += _score(page)
                scores[name] = total
            print(f"\nhub round trip: hub up {up:.1f} s, release + 4 servers ready {spawned:.1f} s, autograde of 3 "
                  f"{grading_s:.1f} s; scores {scores}; wall {time.monotonic() - started:.1f} s")
            # the scripted answers show in the scores: right > partly (no run) > empty; the pages are the gradebook's
            assert scores["ada"] > scores["ben"] > scores["cai"], scores
            from nbgrader.api import Gradebook
            with Gradebook(course.db_url, course.course_id) as gradebook:
                assert {n: gradebook.find_submission("day1", n).score for n in LEARNERS} == pytest.approx(scores)
        finally:
            hub.stop_hub(process)
    assert process.returncode is not None
