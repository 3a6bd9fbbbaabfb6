"""HTTP benchmark (not a test): concurrent clients running 10,000-permutation runs against `phase1 serve`.

By default it starts its own server (APP_ENV=prod, a temporary PHASE1_HOME, one admin per client created
with `phase1 admin create-user`), logs every client in with password and TOTP, and for ``--duration``
seconds each client POSTs /api/phase1/run with the phase2_10k preset (9,568 permutations) and a seed of
its own per request, so every request is a real engine run (the run cache never answers). It measures the
in-process baseline (PHASE1_RUN_PROCESSES=0: the engine in the server's run threads) and then the engine
processes (one per core), ``--repeats`` rounds each, and reports p50 / p95 / p99 latency, throughput and errors
as min / median / max over the rounds into docs/performance.md ("HTTP").

    .venv/bin/python benchmarks/http.py                      # 4 clients, 3 x 60 s per configuration
    .venv/bin/python benchmarks/http.py --duration 20 --repeats 1 --no-doc
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


def start_server(workdir: Path, clients: int, run_workers: int, processes: int
                 ) -> tuple[subprocess.Popen, str, list[dict[str, str]]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHASE1_")}
    env.update(PHASE1_RUN_WORKERS=str(run_workers), PHASE1_RUN_PROCESSES=str(processes))
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
          vary_seed: bool, round_index: int = 0) -> dict[str, Any]:
    """One round of ``clients`` clients for ``duration`` seconds. With ``vary_seed`` every request of every
    client and every round has its own seed (a repeated seed would be answered by the run cache)."""
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
            seed = 1_000_000_000 * (round_index + 1) + 1_000_000 * (index + 1) + n if vary_seed else 424242
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


#: Issue 17's targets: 4 clients x phase2_10k, p95 at most 0.5 s, at least 2x the 5.5 runs/s of one process.
TARGET_P95_S, TARGET_RPS = 0.5, 11.0
FIGURES = ("throughput_rps", "p50_s", "p95_s", "p99_s", "max_s", "engine_p50_s")


def spread(values: list[float]) -> tuple[float, float, float]:
    """(min, median, max) of the repeats."""
    import statistics

    return min(values), statistics.median(values), max(values)


def summarise(config: str, repeats: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"config": config, "repeats": len(repeats),
                           "requests": sum(r["requests"] for r in repeats),
                           "errors": sum(r["errors"] for r in repeats),
                           "error_samples": [e for r in repeats for e in r["error_samples"]][:5]}
    for key in FIGURES:
        out[key] = spread([r[key] for r in repeats])
    return out


def cell(values: tuple[float, float, float], digits: int) -> str:
    return " / ".join(f"{v:.{digits}f}" for v in values)


def render(results: list[dict[str, Any]], args: argparse.Namespace, own_server: bool) -> str:
    what = ("a new seed per request, so every request is a full engine run and its Parquet write"
            if not args.same_seed else "the same seed every time, so after the first run the run cache answers")
    server = ("its own `phase1 serve` per configuration (APP_ENV=prod, SQLite store, "
              f"{args.run_workers} run threads), each client logged in with password + TOTP"
              if own_server else "a running server")
    lines = [
        START, "",
        f"`benchmarks/http.py`: {args.clients} concurrent clients for {args.duration:.0f} s, {args.repeats} repeats "
        f"per configuration, against {server}; each POSTs `/api/phase1/run` with preset `{args.preset}` and {what}. "
        "Latency is the client's, request sent to answer read. Each cell: min / median / max over the repeats.", "",
        f"Machine: {machine()}.", "",
        "| configuration | requests | errors | throughput (runs/s) | p50 s | p95 s | p99 s | engine p50 s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r['config']} | {r['requests']:,} | {r['errors']} | {cell(r['throughput_rps'], 2)} | "
                     f"{cell(r['p50_s'], 3)} | {cell(r['p95_s'], 3)} | {cell(r['p99_s'], 3)} | "
                     f"{cell(r['engine_p50_s'], 3)} |")
    lines.append("")
    if len(results) == 2:
        before, after = results
        ratio = after["throughput_rps"][1] / max(before["throughput_rps"][1], 1e-9)
        lines.append(f"Median throughput, {after['config']} over {before['config']} (same run): **{ratio:.2f}x**.")
        lines.append("")
    last = results[-1]
    met = last["p95_s"][2] <= TARGET_P95_S and last["throughput_rps"][0] >= TARGET_RPS and last["errors"] == 0
    lines += [f"Targets for {last['config']} (p95 ≤ {TARGET_P95_S} s in every repeat, throughput ≥ {TARGET_RPS} "
              f"runs/s in every repeat, no errors): **{'met' if met else 'NOT met'}**.", "", END]
    return "\n".join(lines)


def write_doc(block: str) -> None:
    text = DOC.read_text() if DOC.exists() else "# Performance\n"
    if START not in text:
        text = text.rstrip("\n") + "\n\n## HTTP\n\n" + START + "\n" + END + "\n"
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(head + block + tail)


def measure(tmp: Path, args: argparse.Namespace, processes: int | None) -> list[dict[str, Any]]:
    """``args.repeats`` benchmark rounds against one server with ``processes`` engine processes (None: a
    running server at ``args.url``)."""
    proc = None
    try:
        if processes is None:
            url, admins = args.url.rstrip("/"), None
        else:
            proc, url, admins = start_server(tmp, args.clients, args.run_workers, processes)
        return [bench(url, admins, args.clients, args.duration, args.preset, not args.same_seed, round_index)
                for round_index in range(args.repeats)]
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="benchmark a running server (dev mode from loopback: no login needed)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per repeat (default 60)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds per configuration (default 3)")
    parser.add_argument("--preset", default="phase2_10k")
    parser.add_argument("--same-seed", action="store_true", help="same seed every request: measures the run cache")
    parser.add_argument("--run-workers", type=int, default=4, help="the server's run threads (PHASE1_RUN_WORKERS)")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1,
                        help="engine processes of the measured server (PHASE1_RUN_PROCESSES; default: one per core)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the in-process baseline (PHASE1_RUN_PROCESSES=0) measured first")
    parser.add_argument("--no-doc", action="store_true", help="print only; do not edit docs/performance.md")
    args = parser.parse_args()
    results = []
    if args.url:
        results.append(summarise("running server", measure(Path("."), args, None)))
    else:
        configs = ([] if args.no_baseline else [0]) + [args.processes]
        for processes in configs:
            name = ("engine in the server process (threads)" if processes == 0
                    else f"{processes} engine processes")
            with tempfile.TemporaryDirectory(prefix="phase1-http-bench-") as tmp:
                results.append(summarise(name, measure(Path(tmp), args, processes)))
    print(json.dumps(results, indent=2))
    block = render(results, args, own_server=not args.url)
    print(block)
    if not args.no_doc:
        write_doc(block)


if __name__ == "__main__":
    main()
