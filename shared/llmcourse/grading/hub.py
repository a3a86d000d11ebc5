"""The course hub: JupyterHub with nbgrader's exchange, for a small class on one machine.

Usage::

    make hub                                                # = llmcourse hub start (grading/hub/hub.yaml)
    llmcourse hub start --learners alice,bob,carol --instructor teacher --port 8000
    llmcourse hub release day1        # the learner edition of day1 into the exchange (learners: Assignments → Fetch)
    llmcourse hub collect day1        # the exchange's submissions → grading/submitted/<learner>/day1/
    llmcourse grade autograde day1 && llmcourse grade feedback day1
    llmcourse hub return-feedback day1                      # feedback pages into the exchange (learners: Fetch Feedback)

    from llmcourse.grading.hub import load_settings, prepare, start_hub, release_to_exchange, collect_from_exchange
    settings = load_settings(learners=["alice", "bob"], port=8000)     # grading/hub/hub.yaml < LLMCOURSE_HUB_* < these
    process = start_hub(settings)                                    # jupyterhub in the background (a Popen)

The hub's configuration is ``grading/hub/jupyterhub_config.py`` (``jupyterhub -f`` reads it; it calls
:func:`load_settings` and :func:`prepare`). Accounts: the learners and one instructor (a hub admin) log in with
JupyterHub's ``shared-password`` authenticator (one learner password, one instructor password; generated into
``<state>/passwords.json`` unless given). Every server runs the course venv's ``jupyterhub-singleuser`` (JupyterLab,
the course kernel, nbgrader's extensions); learners get the Assignments tab only, the instructor also the formgrader,
with the course directory as their root. nbgrader's exchange is a folder (``<state>/exchange/<course_id>/`` with
``outbound/``, ``inbound/``, ``feedback/``; ``Exchange.path_includes_course``) and the hub's groups
``nbgrader-<course_id>`` / ``formgrade-<course_id>`` tell nbgrader's ``JupyterHubAuthPlugin`` who is in the course.

The ``simple`` spawner runs every server as the Unix user that started the hub: every learner can read every
other learner's files and the answer key. That is fine for a test or a small trusted class on one machine, not for
a real course: there, use a spawner with one Unix user or container per learner (``grading/hub/values.yaml``:
Zero to JupyterHub on Kubernetes). Under the simple spawner nbgrader cannot tell learners apart by Unix user,
so the learner's hub name is their nbgrader student id (``CourseDirectory.student_id = $JUPYTERHUB_USER``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from llmcourse.artifacts import AUTOGRADE_IGNORE, COURSE_ROOT
from llmcourse.errors import CourseError, InputError, SetupError

HUB_DIR = COURSE_ROOT / "grading" / "hub"
HUB_CONFIG = HUB_DIR / "jupyterhub_config.py"
SETTINGS_FILE = HUB_DIR / "hub.yaml"
# configurable-http-proxy from npm lives here (make setup / make hub); the default state folder too. Gitignored.
LOCAL = COURSE_ROOT / ".hub"
LOCAL_PROXY = LOCAL / "node_modules" / ".bin" / "configurable-http-proxy"
SETTINGS_ENV = "LLMCOURSE_HUB_SETTINGS"   # the resolved settings (JSON) that `hub start` hands to jupyterhub
ENV_PREFIX = "LLMCOURSE_HUB_"
# JupyterHub lower-cases user names; nbgrader splits exchange file names at "+".
USER_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
PATH_FIELDS = ("course_root", "state_dir", "exchange", "proxy")
OPERATOR = "llmcourse-operator"           # the hub service whose token scripts (and tests) use
LEARNER_ONLY_OFF = {                       # nbgrader's instructor tools, switched off in learners' servers
    "server": ["nbgrader.server_extensions.formgrader", "nbgrader.server_extensions.course_list"],
    "lab": ["@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment", "@jupyter/nbgrader:course-list"],
}


class HubError(CourseError):
    """The hub cannot start or an exchange step cannot run; the message (Chinese) says what to fix."""


@dataclass
class HubSettings:
    """Everything the hub reads; grading/hub/hub.yaml documents each field."""

    course_id: str = "llmcourse"
    course_root: str = str(COURSE_ROOT)
    instructor: str = "instructor"
    learners: list[str] = field(default_factory=lambda: ["learner1", "learner2", "learner3"])
    ip: str = "127.0.0.1"
    port: int = 8000
    hub_port: int = 8081
    proxy_api_port: int = 8001
    state_dir: str = str(LOCAL / "state")
    exchange: str = ""                     # default: <state_dir>/exchange
    learner_password: str = ""             # default: generated into <state_dir>/passwords.json
    instructor_password: str = ""
    api_token: str = ""                    # the operator service's token; default: generated there too
    proxy: str = ""                        # configurable-http-proxy; default: .hub/node_modules/.bin, then PATH
    venv_bin: str = str(Path(sys.executable).parent)

    @property
    def state(self) -> Path:
        return Path(self.state_dir)

    @property
    def exchange_root(self) -> Path:
        return Path(self.exchange) if self.exchange else self.state / "exchange"

    @property
    def url(self) -> str:
        return f"http://{self.ip}:{self.port}"

    def config_dir(self, role: str) -> Path:
        """The Jupyter config folder of a role (learner | instructor), written by :func:`prepare`."""
        return self.state / "config" / role

    def role(self, user: str) -> str:
        return "instructor" if user == self.instructor else "learner"


def _coerce(name: str, value, where: str):
    kind = {f.name: f.type for f in fields(HubSettings)}[name]
    if kind == "int":
        try:
            return int(value)
        except (TypeError, ValueError):
            raise InputError(f"{where}：{name} 应是整数（端口号），现在是 {value!r}") from None
    if kind == "list[str]":
        items = value.split(",") if isinstance(value, str) else list(value or [])
        return [str(item).strip() for item in items if str(item).strip()]
    return "" if value is None else str(value)


def load_settings(path: str | Path | None = None, **overrides) -> HubSettings:
    """Defaults < ``path`` (default grading/hub/hub.yaml) < ``LLMCOURSE_HUB_<FIELD>`` < ``overrides`` (None = unset).

    With ``LLMCOURSE_HUB_SETTINGS`` set (what ``llmcourse hub start`` hands to jupyterhub) that JSON is read instead.
    """
    import yaml

    names = {f.name for f in fields(HubSettings)}
    if os.environ.get(SETTINGS_ENV) and path is None and not overrides:
        return HubSettings(**json.loads(Path(os.environ[SETTINGS_ENV]).read_text(encoding="utf-8")))
    values: dict = {}
    if path and not Path(path).is_file():
        raise InputError(f"找不到课程中心的设置文件 {path}（省略 --settings 就用 grading/hub/hub.yaml）")
    path = Path(path) if path else SETTINGS_FILE
    if path.is_file():
        try:
            tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise InputError(f"{path} 不是合法的 YAML：{exc}") from None
        if not isinstance(tree, dict):
            raise InputError(f"{path} 应是“字段: 值”的映射（见 grading/hub/hub.yaml），现在是 {type(tree).__name__}")
        unknown = sorted(set(tree) - names)
        if unknown:
            raise InputError(f"{path}：不认识的字段 {', '.join(unknown)}；可用的字段：{', '.join(sorted(names))}")
        values.update({k: _coerce(k, v, str(path)) for k, v in tree.items() if v is not None})
        for name in PATH_FIELDS:  # relative paths in a YAML file are relative to that file (as in course configs)
            if values.get(name):
                values[name] = str((path.parent / values[name]).resolve())
    for name in names:
        if f"{ENV_PREFIX}{name.upper()}" in os.environ:
            values[name] = _coerce(name, os.environ[f"{ENV_PREFIX}{name.upper()}"], f"{ENV_PREFIX}{name.upper()}")
    values.update({k: _coerce(k, v, f"参数 {k}") for k, v in overrides.items() if v is not None})
    settings = HubSettings(**values)
    settings.course_root = str(Path(settings.course_root).resolve())
    settings.state_dir = str(Path(settings.state_dir).resolve())
    return settings


def check_settings(settings: HubSettings) -> None:
    """Names the hub and nbgrader can use, a course with source assignments, distinct ports."""
    names = [settings.instructor, *settings.learners]
    if not settings.learners:
        raise InputError("没有学员：用 --learners a,b,c 或 grading/hub/hub.yaml 的 learners 列出学员账号")
    bad = [name for name in names if not USER_NAME.match(name)]
    if bad:
        raise InputError(f"账号名 {', '.join(map(repr, bad))} 不能用：只能含小写字母、数字和 . _ -，"
                         "以字母或数字开头，最长 32 个字符（JupyterHub 会把大写改成小写，nbgrader 用 + 分隔文件名）")
    if len(set(names)) != len(names):
        raise InputError(f"账号名重复：{', '.join(sorted({n for n in names if names.count(n) > 1}))}；"
                         "讲师不能同时是学员，每位学员一个名字")
    ports = [settings.port, settings.hub_port, settings.proxy_api_port]
    if len(set(ports)) != 3:
        raise InputError(f"port、hub_port、proxy_api_port 必须是三个不同的端口，现在是 {ports}")
    if not Path(settings.course_root, "grading").is_dir() and not any(Path(settings.course_root).glob("day*/*.ipynb")):
        raise InputError(f"课程目录 {settings.course_root} 里没有源作业（day1/ …）：course_root 应指向课程仓库根目录")


def find_proxy(settings: HubSettings) -> str:
    """configurable-http-proxy (JupyterHub's proxy, a node program), or a HubError saying how to install it."""
    candidates = [settings.proxy] if settings.proxy else [str(LOCAL_PROXY), shutil.which("configurable-http-proxy")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            if not shutil.which("node"):
                raise HubError("找到了 configurable-http-proxy，但没有 node：先安装 Node.js（20 或更新，"
                               "如 apt-get install nodejs npm），再运行 make hub")
            return str(Path(candidate).resolve())
    where = settings.proxy or LOCAL_PROXY
    raise HubError(f"找不到 configurable-http-proxy（{where}）：JupyterHub 需要这个代理。运行 make setup（或 "
                   f"npm install --prefix {LOCAL} configurable-http-proxy@{_proxy_pin()}）；"
                   "需要 Node.js 和 npm（apt-get install nodejs npm）")


def _proxy_pin() -> str:
    """configurable-http-proxy's version, from pyproject.toml (the one place for pins)."""
    import tomllib

    try:
        tree = tomllib.loads((COURSE_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
        return tree["tool"]["llmcourse"]["npm"]["configurable-http-proxy"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "<pyproject.toml 里的版本>"


def check_ports_free(settings: HubSettings) -> None:
    for name in ("port", "hub_port", "proxy_api_port"):
        port = getattr(settings, name)
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((settings.ip if name == "port" else "127.0.0.1", port))
            except OSError:
                raise HubError(f"端口 {port}（{name}）已被占用：可能另一个课程中心还在运行；"
                               f"换一个端口（--{name.replace('_', '-')} 或 hub.yaml 的 {name}）") from None


def ensure_secrets(settings: HubSettings) -> HubSettings:
    """Passwords and the operator token: given ones win; others are generated once into <state>/passwords.json."""
    path = settings.state / "passwords.json"
    stored = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    fresh = {"learner_password": secrets.token_urlsafe(9), "instructor_password": secrets.token_urlsafe(32),
             "api_token": secrets.token_hex(32)}
    for name, value in fresh.items():
        stored[name] = getattr(settings, name) or stored.get(name) or value
        setattr(settings, name, stored[name])
    if len(settings.learner_password) < 8 or len(settings.instructor_password) < 32:
        raise InputError("学员密码至少 8 个字符，讲师密码至少 32 个字符（JupyterHub 的 shared-password 登录的要求）")
    settings.state.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stored, indent=1), encoding="utf-8")
    path.chmod(0o600)
    return settings


def _nbgrader_config(settings: HubSettings, role: str) -> str:
    lines = [
        f'"""nbgrader in the course hub, {role} servers (written by llmcourse.grading.hub.prepare; do not edit)."""',
        "import os", "", "from nbgrader.auth import JupyterHubAuthPlugin", "", "c = get_config()  # noqa: F821",
        f"c.CourseDirectory.course_id = {settings.course_id!r}",
        f"c.Exchange.root = {str(settings.exchange_root)!r}",
        "# One exchange for several courses: <root>/<course_id>/{outbound,inbound,feedback}, fetched into <course_id>/",
        "c.Exchange.path_includes_course = True",
        "# Who is in which course: the hub's groups nbgrader-<course_id> (learners) and formgrade-<course_id>",
        "c.Authenticator.plugin_class = JupyterHubAuthPlugin",
    ]
    if role == "learner":
        lines += ["# The simple spawner runs everyone as one Unix user: the learner is who the hub says they are.",
                  'c.CourseDirectory.student_id = os.environ.get("JUPYTERHUB_USER", "*")']
    else:
        root = Path(settings.course_root)
        lines += [f"c.CourseDirectory.root = {str(root)!r}",
                  f"c.CourseDirectory.db_url = {'sqlite:///' + str(root / 'grading' / 'gradebook.db')!r}",
                  "# Every submission is owned by the one Unix user of the simple spawner.",
                  "c.ExchangeCollect.check_owner = False"]
    return "\n".join(lines) + "\n"


def prepare(settings: HubSettings) -> HubSettings:
    """Write the per-role Jupyter config folders and the exchange; return the settings (idempotent)."""
    for role in ("learner", "instructor"):
        folder = settings.config_dir(role)
        (folder / "labconfig").mkdir(parents=True, exist_ok=True)
        (folder / "nbgrader_config.py").write_text(_nbgrader_config(settings, role), encoding="utf-8")
        off = LEARNER_ONLY_OFF if role == "learner" else {"server": [], "lab": []}
        server = {"ServerApp": {"jpserver_extensions": {name: False for name in off["server"]}}}
        (folder / "jupyter_server_config.json").write_text(json.dumps(server, indent=1), encoding="utf-8")
        page = {"disabledExtensions": {name: True for name in off["lab"]}}
        (folder / "labconfig" / "page_config.json").write_text(json.dumps(page, indent=1), encoding="utf-8")
    (settings.state / "home").mkdir(parents=True, exist_ok=True)
    # nbgrader's default exchange root is world-writable (its release makes <course_id>/ and the folders below).
    settings.exchange_root.mkdir(parents=True, exist_ok=True)
    settings.exchange_root.chmod(0o777)
    return settings


def user_environment(settings: HubSettings, role: str) -> dict[str, str]:
    """The environment of a learner's or the instructor's server: the course venv first, the role's config."""
    path = os.pathsep.join([settings.venv_bin, os.environ.get("PATH", "/usr/bin:/bin")])
    config_path = [str(settings.config_dir(role))]
    if role == "instructor":  # the course's nbgrader configuration (preprocessors, stubs, release rules)
        config_path.append(str(COURSE_ROOT / "grading"))
    return {"PATH": path, "JUPYTER_CONFIG_PATH": os.pathsep.join(config_path), "PYTHONUNBUFFERED": "1"}


def start_hub(settings: HubSettings, log=None) -> subprocess.Popen:
    """Check, prepare and start jupyterhub in the background (its own process group); return the process."""
    check_settings(settings)
    proxy = find_proxy(settings)
    jupyterhub = Path(settings.venv_bin) / "jupyterhub"
    if not jupyterhub.is_file():
        raise SetupError(f"{jupyterhub} 不存在：课程环境里没有 JupyterHub。运行 make setup（安装 .[hub]，"
                         "版本在 pyproject.toml）")
    check_ports_free(settings)
    settings.proxy = proxy
    prepare(ensure_secrets(settings))
    resolved = settings.state / "settings.json"
    resolved.write_text(json.dumps(asdict(settings), ensure_ascii=False, indent=1), encoding="utf-8")
    resolved.chmod(0o600)
    env = {**os.environ, SETTINGS_ENV: str(resolved),
           "PATH": os.pathsep.join([settings.venv_bin, str(Path(proxy).parent), os.environ.get("PATH", "")])}
    return subprocess.Popen([str(jupyterhub), "-f", str(HUB_CONFIG)], cwd=settings.state, env=env,
                            stdout=log, stderr=subprocess.STDOUT if log else None, start_new_session=True)


def wait_until_up(settings: HubSettings, process: subprocess.Popen | None = None, timeout: float = 120) -> float:
    """Seconds until the hub answers /hub/api through the proxy; a HubError if it exits or times out first."""
    import urllib.error
    import urllib.request

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process is not None and process.poll() is not None:
            raise HubError(f"jupyterhub 启动后退出了（状态 {process.returncode}）：看上面的日志")
        try:
            with urllib.request.urlopen(f"{settings.url}/hub/api", timeout=5) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise HubError(f"{timeout:.0f} 秒内课程中心没有在 {settings.url} 应答：看 jupyterhub 的日志")


def stop_hub(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM: jupyterhub stops the learners' servers and the proxy it started; then its group is killed."""
    import signal

    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # anything of this hub's session that outlived it
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


# ------------------------------------------------------------------------------- the instructor's exchange steps

def exchange_config(course, settings: HubSettings):
    """The course's nbgrader configuration (grading/nbgrader_config.py, pointed at ``course``) + the hub's exchange."""
    from llmcourse.grading.workflow import nbgrader_config

    config = nbgrader_config(course)
    config.Exchange.root = str(settings.exchange_root)
    config.Exchange.path_includes_course = True
    config.ExchangeCollect.check_owner = False
    return config


def _exchange_step(kind: str, course, settings: HubSettings, assignment: str, ignore=None, **traits) -> None:
    from nbgrader.auth import Authenticator
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.exchange import ExchangeError, ExchangeFactory

    config = exchange_config(course, settings)
    if ignore is not None:
        config.CourseDirectory.ignore = ignore
    coursedir = CourseDirectory(config=config)
    coursedir.assignment_id = assignment
    step = getattr(ExchangeFactory(config=config), kind)(coursedir=coursedir, authenticator=Authenticator(config=config),
                                                         config=config)
    for name, value in traits.items():
        setattr(step, name, value)
    try:
        step.start()
    except ExchangeError as exc:
        raise HubError(f"nbgrader 交换目录 {settings.exchange_root}：{assignment} 的这一步没有完成（{exc}）") from None


def release_to_exchange(course, settings: HubSettings, assignment: str) -> Path:
    """The learner edition of ``assignment`` (``llmcourse grade release``) into the exchange's outbound folder."""
    from llmcourse.grading.workflow import release

    release(course, assignment)
    _exchange_step("ReleaseAssignment", course, settings, assignment, force=True)
    return settings.exchange_root / settings.course_id / "outbound" / assignment


def collect_from_exchange(course, settings: HubSettings, assignment: str) -> list[str]:
    """Each learner's latest submission from the exchange into grading/submitted/<learner>/<assignment>/.

    Copied as ``llmcourse grade collect`` copies an inbox: the learner's own files (runs/, their config) come
    along, only junk is left out (the course's release list would drop the learner's artifacts)."""
    inbound = settings.exchange_root / settings.course_id / "inbound"
    if not inbound.is_dir():
        raise HubError(f"交换目录里还没有 {inbound}：先 llmcourse hub release {assignment}，学员提交之后再收取")
    _exchange_step("Collect", course, settings, assignment, update=True, ignore=AUTOGRADE_IGNORE)
    return course.students(assignment)


def return_feedback(course, settings: HubSettings, assignment: str) -> list[Path]:
    """The feedback pages of ``llmcourse grade feedback`` into the exchange (learners: Fetch Feedback)."""
    pages = sorted((course.grading / "feedback").glob(f"*/{assignment}/*.html"))
    if not pages:
        raise HubError(f"还没有 {assignment} 的反馈页面：先运行 llmcourse grade autograde {assignment} 和 "
                       f"llmcourse grade feedback {assignment}")
    _exchange_step("ReleaseFeedback", course, settings, assignment)
    return pages


# ----------------------------------------------------------------------------------------------------- CLI

def add_hub_commands(sub) -> None:
    """``llmcourse hub start|release|collect|return-feedback`` (added to the main parser)."""
    hub = sub.add_parser("hub", help="instructor: the course hub (JupyterHub + nbgrader exchange) on this machine")
    steps = hub.add_subparsers(dest="hub_command", required=True)
    start = steps.add_parser("start", help="start JupyterHub for the class (blocks; Ctrl-C stops it)")
    start.add_argument("--learners", default=None, help="comma-separated learner accounts, e.g. alice,bob,carol")
    start.add_argument("--instructor", default=None, help="the instructor's account (a hub admin, formgrader)")
    start.add_argument("--ip", default=None, help="address to listen on (default 127.0.0.1)")
    for name in ("port", "hub-port", "proxy-api-port"):
        start.add_argument(f"--{name}", type=int, default=None)
    for name, help_text in (("release", "learner edition of ASSIGNMENT into the exchange"),
                            ("collect", "submissions from the exchange into grading/submitted/"),
                            ("return-feedback", "feedback pages of ASSIGNMENT into the exchange")):
        step = steps.add_parser(name, help=help_text)
        step.add_argument("assignment", help="day1 | day2 | day3")
    for parser in steps.choices.values():
        parser.add_argument("--settings", default=None, help="hub settings YAML (default: grading/hub/hub.yaml)")
        parser.add_argument("--course", default=None, help="course directory (default: this repository)")
        parser.add_argument("--exchange", default=None, help="exchange folder (default: <state_dir>/exchange)")


def run_hub_command(args) -> int:
    from llmcourse.grading.workflow import Course

    overrides = {"course_root": args.course, "exchange": args.exchange}
    if args.hub_command == "start":
        overrides.update(learners=args.learners, instructor=args.instructor, ip=args.ip, port=args.port,
                         hub_port=args.hub_port, proxy_api_port=args.proxy_api_port)
    settings = load_settings(args.settings, **overrides)
    if args.hub_command != "start":
        course = Course(settings.course_root, settings.course_id)
        if args.hub_command == "release":
            print(f"已发布到交换目录：{release_to_exchange(course, settings, args.assignment)}"
                  "（学员：JupyterLab 的 Assignments 标签页 → Fetch）")
        elif args.hub_command == "collect":
            learners = collect_from_exchange(course, settings, args.assignment)
            print(f"已收取 {len(learners)} 位学员的 {args.assignment}：{', '.join(learners) or '无'}"
                  f"（{course.grading / 'submitted'}）；下一步 llmcourse grade autograde {args.assignment}")
        else:
            pages = return_feedback(course, settings, args.assignment)
            print(f"已把 {len(pages)} 个反馈页面放进交换目录（学员：Assignments → Fetch Feedback）")
        return 0
    import signal

    def interrupt(signum, frame):  # `kill` (SIGTERM) stops the hub as Ctrl-C does
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupt)
    process = start_hub(settings)
    try:
        wait_until_up(settings, process)
        print(f"课程中心已启动：{settings.url}\n  学员 {', '.join(settings.learners)}：密码 {settings.learner_password}\n"
              f"  讲师 {settings.instructor}（管理员、formgrader）：密码 {settings.instructor_password}\n"
              f"  交换目录 {settings.exchange_root}；密码和令牌在 {settings.state / 'passwords.json'}\n按 Ctrl-C 停止。",
              flush=True)
        process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop_hub(process)
    return 0
