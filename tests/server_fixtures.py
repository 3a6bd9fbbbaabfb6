"""Helpers of the server tests: start the real ``phase1 serve`` process, create admins, drive curl."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyotp

ROOT = Path(__file__).resolve().parent.parent
PHASE1 = str(Path(sys.executable).with_name("phase1"))
CURL = shutil.which("curl")
#: The operations guide's CLI flow ranges (180 permutations with the other keys at their defaults).
GUIDE_RANGES = {
    "senior_tenor": [10, 12, 15, 20],
    "senior_coupon": {"min": 0.04, "max": 0.06, "step": 0.0025},
    "senior_dscr": {"min": 1.25, "max": 1.45, "step": 0.05},
}
HELLO_NOTEBOOK = {
    "cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
               "source": ["print('hello from a phase1 test dashboard')"]}],
    "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                 "language_info": {"name": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}
WHOAMI_NOTEBOOK = {**HELLO_NOTEBOOK, "cells": [{
    "cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
    "source": ["import os; print('kernel user:', os.environ.get('HTTP_X_PHASE1_USER'))"]}]}
# A 1x1 PNG for Voila's /voila/files/ route.
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6300010000050001a5f645400000000049454e44ae426082")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def secret() -> str:
    return secrets.token_urlsafe(40)


@dataclass
class Admin:
    username: str
    password: str
    totp_secret: str
    _last_step: int = -1

    def code(self) -> str:
        """A TOTP code the server has not seen for this user: the current step, else the next one (±1 window)."""
        while True:
            current = int(time.time() // 30)
            step = max(current, self._last_step + 1)
            if step <= current + 1:
                break
            time.sleep(30 - time.time() % 30 + 0.1)  # both usable steps spent: wait for the next one
        self._last_step = step
        return pyotp.TOTP(self.totp_secret).at(step * 30)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    set_cookies: list[str] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class Curl:
    """Real curl with a cookie jar (``-c jar -b jar``), as in the operations guide."""

    def __init__(self, base_url: str, jar: Path | None, interface: str | None = None):
        self.base_url = base_url.rstrip("/")
        self.jar = jar
        self.interface = interface

    def __call__(self, path: str, *args: str, method: str | None = None, data: str | None = None,
                 json_body: Any = None, headers: dict[str, str] | None = None, timeout: float = 120) -> Response:
        assert CURL, "curl is required"
        tmp = Path(self.jar.parent if self.jar else "/tmp")
        head_file = tmp / f"h-{secrets.token_hex(4)}"
        body_file = tmp / f"b-{secrets.token_hex(4)}"
        cmd = [CURL, "-sS", "-D", str(head_file), "-o", str(body_file), "-w", "%{http_code}"]
        if self.jar is not None:
            cmd += ["-c", str(self.jar), "-b", str(self.jar)]
        if self.interface:
            cmd += ["--interface", self.interface]
        if method:
            cmd += ["-X", method]
        for name, value in (headers or {}).items():
            cmd += ["-H", f"{name}: {value}"]
        if json_body is not None:
            cmd += ["-H", "Content-Type: application/json", "-d", json.dumps(json_body)]
        elif data is not None:
            cmd += ["-d", data]
        cmd += [*args, self.base_url + path]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        assert out.returncode == 0, f"curl failed: {out.stderr}"
        raw_headers = head_file.read_bytes().decode("latin-1")
        head_file.unlink()
        body = body_file.read_bytes() if body_file.exists() else b""
        body_file.unlink(missing_ok=True)
        block = raw_headers.strip().split("\r\n\r\n")[-1]
        hdrs: dict[str, str] = {}
        cookies = []
        for line in block.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            hdrs[name.strip().lower()] = value.strip()
            if name.strip().lower() == "set-cookie":
                cookies.append(value.strip())
        return Response(int(out.stdout.strip() or 0), hdrs, body, cookies)


@dataclass
class Server:
    """A running ``phase1 serve`` process and what the tests need to talk to it."""

    url: str
    port: int
    home: Path
    root: Path
    env: dict[str, str]
    proc: subprocess.Popen
    log_path: Path
    ops_token: str
    admins: dict[str, Admin]
    workdir: Path

    def curl(self, name: str | None = None, interface: str | None = None) -> Curl:
        """A curl with its own cookie jar (``name``), or without one."""
        jar = self.workdir / f"{name}.jar" if name else None
        return Curl(self.url, jar, interface)

    @property
    def ops_headers(self) -> dict[str, str]:
        """The operator's header (X-Admin-Token) for the ops routes."""
        return {"X-Admin-Token": self.ops_token}

    def log_tail(self, n: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-n:]

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([PHASE1, *args], input=stdin, capture_output=True, text=True, env=self.env,
                              cwd=self.root, timeout=120, check=False)

    def login(self, username: str, jar_name: str | None = None, interface: str | None = None) -> Curl:
        """The guide's two curl calls: password, then the TOTP code; returns the curl with the elevated jar."""
        admin = self.admins[username]
        curl = self.curl(jar_name or username, interface)
        r = curl("/auth/login", method="POST", data=f"username={admin.username}&password={admin.password}")
        assert r.status == 200, r.text
        r = curl("/auth/mfa", method="POST", data=f"code={admin.code()}")
        assert r.status == 200, r.text
        return curl


def create_admin(env: dict[str, str], username: str, cwd: Path) -> Admin:
    """`phase1 admin create-user NAME --json`, the password on stdin."""
    password = secrets.token_hex(16)  # URL-safe, so `curl -d "username=...&password=..."` sends it as is
    out = subprocess.run([PHASE1, "admin", "create-user", username, "--json"], input=password + "\n",
                         capture_output=True, text=True, env=env, cwd=cwd, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    enrolment = json.loads(out.stdout)
    assert enrolment["username"] == username
    return Admin(username, password, enrolment["totp_secret"])


def server_env(home: Path, app_env: str = "prod", **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHASE1_", "JUPYTER_"))}
    env.update(APP_ENV=app_env, PHASE1_HOME=str(home), PYTHONUNBUFFERED="1")
    env["JUPYTER_CONFIG_DIR"] = str(home / "jupyter-config")  # no user config leaks into the test server
    env["JUPYTER_RUNTIME_DIR"] = str(home / "jupyter-runtime")
    env.update(extra)
    return env


def make_root(workdir: Path) -> Path:
    root = workdir / "root"
    (root / "dashboards").mkdir(parents=True)
    (root / "dashboards" / "hello.ipynb").write_text(json.dumps(HELLO_NOTEBOOK))
    (root / "dashboards" / "whoami.ipynb").write_text(json.dumps(WHOAMI_NOTEBOOK))
    (root / "dashboards" / "pixel.png").write_bytes(PNG)
    return root


def wait_ready(url: str, proc: subprocess.Popen, log_path: Path, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"phase1 serve exited with {proc.returncode}:\n"
                               f"{log_path.read_text(errors='replace')[-4000:]}")
        try:
            with urllib.request.urlopen(url + "api/phase1/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"phase1 serve did not answer in {timeout_s} s:\n{log_path.read_text(errors='replace')[-4000:]}")


def start_server(workdir: Path, env: dict[str, str], args: list[str] | None = None,
                 admins: list[str] | None = None, ops_token: str = "") -> Server:
    """Create the admins with the CLI, then start `phase1 serve` on a free loopback port and wait for it."""
    home = Path(env["PHASE1_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    root = workdir / "root" if (workdir / "root").is_dir() else make_root(workdir)
    created = {name: create_admin(env, name, root) for name in admins or []}
    port = free_port()
    log_path = workdir / f"server-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([PHASE1, "serve", "--host", "127.0.0.1", "--port", str(port), "--root-dir",
                                 str(root), "--dashboards", str(root / "dashboards"), *(args or [])],
                                env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_ready(url, proc, log_path)
    except BaseException:
        stop_server(proc)
        raise
    token = ops_token or env.get("PHASE1_ADMIN_TOKEN", "")
    if not token:  # dev: the generated token is printed once in the banner
        deadline = time.monotonic() + 10
        while not token and time.monotonic() < deadline:
            m = re.search(r"Ops token for this run .*: (\S+)", log_path.read_text(errors="replace"))
            token = m.group(1) if m else ""
            time.sleep(0.1)
    return Server(url, port, home, root, env, proc, log_path, token, created, workdir)


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM (Jupyter shuts its kernels down), then SIGKILL the process group if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


_URL_RE = re.compile(r"https?://[^\s\"'<>()`\\]+", re.I)
_NAMESPACE_ATTR_RE = re.compile(r"""(xmlns(:[\w-]+)?|rdf:resource|rdf:about)\s*=\s*("[^"]*"|'[^']*')""", re.I)


def external_origins(html: str, own: str) -> set[str]:
    """Every http(s) origin a page mentions other than ``own`` (XML namespace identifiers aside: never fetched)."""
    text = _NAMESPACE_ATTR_RE.sub("", html)
    origins = set()
    for url in _URL_RE.findall(text):
        m = re.match(r"(https?://[^/?#]+)", url, re.I)
        if m and m.group(1).lower() != own.lower().rstrip("/"):
            origins.add(m.group(1))
    return origins
