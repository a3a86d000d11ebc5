"""JupyterHub configuration of the course hub (one machine, a small class).

    llmcourse hub start [--learners a,b,c]      # or: make hub  (checks, secrets, then jupyterhub -f this file)

Settings (course id, accounts, ports, exchange folder) come from grading/hub/hub.yaml, LLMCOURSE_HUB_<FIELD>
variables and the command's flags (llmcourse.grading.hub.load_settings). Everything nbgrader needs per role
(exchange, course id, JupyterHubAuthPlugin) is written by llmcourse.grading.hub.prepare into <state>/config/.
Not for a real course: the simple spawner runs every server as one Unix user (see grading/README.md and values.yaml).
"""
import os

from llmcourse.grading.hub import (
    OPERATOR,
    ensure_secrets,
    find_proxy,
    load_settings,
    prepare,
    user_environment,
)

c = get_config()  # noqa: F821  (provided by traitlets when jupyterhub loads this file)
# `llmcourse hub start` hands over checked settings; `jupyterhub -f` alone reads hub.yaml and makes the secrets here
settings = prepare(ensure_secrets(load_settings()))
course = settings.course_id

# --- where the hub listens and keeps its state
c.JupyterHub.bind_url = settings.url
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{settings.hub_port}"
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{settings.proxy_api_port}"
c.ConfigurableHTTPProxy.command = [settings.proxy or find_proxy(settings)]
c.ConfigurableHTTPProxy.pid_file = str(settings.state / "proxy.pid")
c.JupyterHub.db_url = f"sqlite:///{settings.state / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(settings.state / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(settings.state / "jupyterhub.pid")

# --- accounts: one shared learner password, an instructor (admin) password; only the listed names
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = settings.learner_password
c.SharedPasswordAuthenticator.admin_password = settings.instructor_password
c.Authenticator.allowed_users = set(settings.learners) | {settings.instructor}
c.Authenticator.admin_users = {settings.instructor}
# nbgrader's JupyterHubAuthPlugin reads course membership from these groups (nbgrader's JupyterHub docs).
c.JupyterHub.load_groups = {
    f"nbgrader-{course}": {"users": list(settings.learners)},
    f"formgrade-{course}": {"users": [settings.instructor]},
}

# --- servers: the course venv's JupyterLab + nbgrader, every one as this Unix user (the simple spawner)
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = str(settings.state / "home" / "{username}")
c.Spawner.cmd = [f"{settings.venv_bin}/jupyterhub-singleuser"]
if os.geteuid() == 0:  # jupyter-server refuses root without it (containers, CI machines)
    c.Spawner.args = ["--allow-root"]
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 180  # a busy 2-core machine starts JupyterLab and nbgrader slowly
c.Spawner.http_timeout = 180
# nbgrader asks the hub which groups the server's user is in: the server token may read its own user.
c.Spawner.server_token_scopes = ["users:activity!user", "access:servers!server", "read:users!user"]


def per_role(spawner):
    """Learners: their home folder, the learner config (Assignments tab only). Instructor: the course directory."""
    role = settings.role(spawner.user.name)
    spawner.environment = {**spawner.environment, **user_environment(settings, role)}
    if role == "instructor":
        spawner.notebook_dir = settings.course_root  # formgrader needs the course inside the server's root


c.Spawner.pre_spawn_hook = per_role

# --- a service token for scripts and the round-trip test (tests/test_hub.py): start servers, read users
c.JupyterHub.services = [{"name": OPERATOR, "api_token": settings.api_token}]
c.JupyterHub.load_roles = [{
    "name": OPERATOR,
    "scopes": ["admin:users", "admin:servers", "access:servers", "read:groups", "list:users"],
    "services": [OPERATOR],
}]
