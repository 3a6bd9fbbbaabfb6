"""HTTP benchmark (not a test): concurrent clients running 10,000-permutation runs against `phase1 serve`.

By default it starts its own server (APP_ENV=prod, a temporary PHASE1_HOME, one admin per client created
with `phase1 admin create-user`), logs every client in with password and TOTP, and for ``--duration``
seconds each client POSTs /api/phase1/run with the phase2_10k preset (9,568 permutations) and a seed of
its own per request, so every request is a real engine run (the run cache never answers). It reports
p50 / p95 / p99 latency, throughput and errors, and writes them into docs/performance.md ("HTTP").

    .venv/bin/python benchmarks/http.py                      # 4 clients, 60 s, own server
    .venv/bin/python benchmarks/http.py --duration 20 --no-doc
    .venv/bin/python benchmarks/http.py --same-seed          # measure the run cache instead
    .venv/bin/python benchmarks/http.py --url http://127.0.0.1:8866/   # a running dev server (loopback)
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named http.py: run as a script, its folder is first on sys.path and would shadow the standard
# library's http package (http.client, and urllib through it). Drop that folder before anything imports http.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import argparse
import contextlib
import http.client
import json
import os
import platform
import secrets
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"
START, END = "<!-- http-benchmark:start -->", "<!-- http-benchmark:end -->"
PHASE1 = str(Path(sys.executable).with_name("phase1"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Client:
    """One keep-alive HTTP connection with the session cookie."""

    def __init__(self, url: str):
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=300)
        self.cookie = ""

    def request(self, method: str, path: str, body: Any = None, form: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        hdrs = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        elif form is not None:
            data = urllib.parse.urlencode(form).encode()
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        if self.cookie:
            hdrs["Cookie"] = self.cookie
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=data, headers=hdrs)
                response = self.conn.getresponse()
                payload = response.read()
                break
            except (ConnectionError, http.client.HTTPException):
                if attempt:
                    raise
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=300)
        for name, value in response.getheaders():
            if name.lower() == "set-cookie" and value.startswith("phase1_session="):
                self.cookie = value.split(";", 1)[0]
        return response.status, payload

    def login(self, username: str, password: str, totp_secret: str) -> None:
        import pyotp

        status, body = self.request("POST", "/auth/login", form={"username": username, "password": password})
        assert status == 200, body
        status, body = self.request("POST", "/auth/mfa", form={"code": pyotp.TOTP(totp_secret).now()})
        assert status == 200, body


def start_server(workdir: Path, clients: int, run_workers: int) -> tuple[subprocess.Popen, str, list[dict[str, str]]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHASE1_")}
    env["PHASE1_RUN_WORKERS"] = str(run_workers)
    env.update(APP_ENV="prod", PHASE1_HOME=str(workdir / "home"), PHASE1_ADMIN_TOKEN=secrets.token_urlsafe(40),
               PHASE1_COOKIE_SECRET=secrets.token_urlsafe(40), JUPYTER_CONFIG_DIR=str(workdir / "jupyter"),
               JUPYTER_RUNTIME_DIR=str(workdir / "runtime"))
    (workdir / "root" / "dashboards").mkdir(parents=True)
    admins = []
    for i in range(clients):
        password = secrets.token_hex(16)
        out = subprocess.run([PHASE1, "admin", "create-user", f"bench{i}", "--json"], input=password + "\n",
                             capture_output=True, text=True, env=env, check=True)
        admins.append({"username": f"bench{i}", "password": password, "totp_secret": json.loads(out.stdout)
                       ["totp_secret"]})
    port = free_port()
    log = open(workdir / "server.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([PHASE1, "serve", "--port", str(port), "--root-dir", str(workdir / "root")], env=env,
                            cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit((workdir / "server.log").read_text()[-3000:])
        try:
            status, _ = Client(url).request("GET", "/api/phase1/health")
            if status == 200:
                return proc, url, admins
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not start")


def percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def bench(url: str, admins: list[dict[str, str]] | None, clients: int, duration: float, preset: str,
          vary_seed: bool) -> dict[str, Any]:
    sessions = []
    for i in range(clients):
        client = Client(url)
        if admins:
            client.login(**admins[i])
        sessions.append(client)
    # warm-up: imports and first calls in the server process (not measured)
    status, body = sessions[0].request("POST", "/api/phase1/run", {"preset": "current_1920", "seed": 1})
    assert status == 200, body
    latencies: list[float] = []
    engine: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + duration

    def worker(index: int, client: Client) -> None:
        n = 0
        while time.monotonic() < deadline:
            seed = 1_000_000 * (index + 1) + n if vary_seed else 424242
            n += 1
            started = time.perf_counter()
            try:
                status, body = client.request("POST", "/api/phase1/run", {"preset": preset, "seed": seed, "topn": 20})
            except OSError as error:
                with lock:
                    errors.append(repr(error))
                continue
            elapsed = time.perf_counter() - started
            with lock:
                if status == 200:
                    latencies.append(elapsed)
                    engine.append(json.loads(body)["elapsed_s"])
                else:
                    errors.append(f"{status}: {body[:200]!r}")

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i, c)) for i, c in enumerate(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    return {"clients": clients, "duration_s": round(wall, 1), "preset": preset, "vary_seed": vary_seed,
            "requests": len(latencies) + len(errors), "ok": len(latencies), "errors": len(errors),
            "error_samples": errors[:5], "throughput_rps": round(len(latencies) / wall, 2),
            "p50_s": round(percentile(latencies, 50), 3), "p95_s": round(percentile(latencies, 95), 3),
            "p99_s": round(percentile(latencies, 99), 3), "max_s": round(max(latencies, default=float("nan")), 3),
            "engine_p50_s": round(percentile(engine, 50), 3)}


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    return f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}; {platform.platform()}"


def render(r: dict[str, Any], own_server: bool) -> str:
    verdict = "met" if r["p95_s"] < 1.0 and r["errors"] == 0 else "NOT met"
    what = ("a new seed per request, so every request is a full engine run and its Parquet write"
            if r["vary_seed"] else "the same seed every time, so after the first run the run cache answers")
    server = (f"its own `phase1 serve` (APP_ENV=prod, SQLite store, run pool of {r['run_workers']} threads), each "
              "client logged in with password + TOTP" if own_server else "a running server")
    return "\n".join([
        START, "",
        f"`benchmarks/http.py`: {r['clients']} concurrent clients for {r['duration_s']:.0f} s against {server}; "
        f"each POSTs `/api/phase1/run` with preset `{r['preset']}` (9,568 permutations) and {what}. "
        f"Latency is the client's, request sent to answer read.", "",
        f"Machine: {machine()}.", "",
        "| clients | requests | errors | throughput (runs/s) | p50 s | p95 s | p99 s | max s | engine p50 s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {r['clients']} | {r['requests']:,} | {r['errors']} | {r['throughput_rps']:.2f} | {r['p50_s']:.3f} | "
        f"{r['p95_s']:.3f} | {r['p99_s']:.3f} | {r['max_s']:.3f} | {r['engine_p50_s']:.3f} |", "",
        f"Target p95 under 1 s with no errors: **{verdict}**.", "",
        f"Reading: engine work runs in the server's thread pool, in one Python process, so concurrent runs share "
        f"the interpreter; the server completes about {r['throughput_rps']:.1f} runs/s however many clients ask, "
        f"and a client waits roughly clients / throughput ({r['clients']} / {r['throughput_rps']:.1f} = "
        f"{r['clients'] / max(r['throughput_rps'], 1e-9):.2f} s here). The engine time of a run under this load "
        f"(engine p50) is several times its time alone, so faster engine runs lower the latency directly.", "",
        END,
    ])


def write_doc(block: str) -> None:
    text = DOC.read_text() if DOC.exists() else "# Performance\n"
    if START not in text:
        text = text.rstrip("\n") + "\n\n## HTTP\n\n" + START + "\n" + END + "\n"
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(head + block + tail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="benchmark a running server (dev mode from loopback: no login needed)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument("--preset", default="phase2_10k")
    parser.add_argument("--same-seed", action="store_true", help="same seed every request: measures the run cache")
    parser.add_argument("--run-workers", type=int, default=4, help="the server's run pool (PHASE1_RUN_WORKERS)")
    parser.add_argument("--no-doc", action="store_true", help="print only; do not edit docs/performance.md")
    args = parser.parse_args()
    proc = None
    with tempfile.TemporaryDirectory(prefix="phase1-http-bench-") as tmp:
        try:
            if args.url:
                url, admins = args.url.rstrip("/"), None
            else:
                proc, url, admins = start_server(Path(tmp), args.clients, args.run_workers)
            result = bench(url, admins, args.clients, args.duration, args.preset, not args.same_seed)
            result["run_workers"] = None if args.url else args.run_workers
        finally:
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
    print(json.dumps(result, indent=2))
    block = render(result, own_server=not args.url)
    print(block)
    if not args.no_doc:
        write_doc(block)


if __name__ == "__main__":
    main()
