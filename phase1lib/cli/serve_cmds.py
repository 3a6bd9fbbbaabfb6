"""``phase1 serve``: the REST API, the Voila dashboards and JupyterLab in one process, behind one login."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="start the workbench server: REST API, dashboards and JupyterLab (one login)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8866, help="port (default 8866)")
    p.add_argument("--root-dir", default=None,
                   help="folder JupyterLab browses and Voila renders from (default: the current directory)")
    p.add_argument("--dashboards", default=None,
                   help="folder of the Voila dashboards, inside the root (default ROOT/dashboards, or "
                        "PHASE1_DASHBOARDS)")
    p.add_argument("--default-project", default=None,
                   help="project JSON a run uses when the request and the session have none (default: the "
                        "London sample, or PHASE1_DEFAULT_PROJECT)")
    cookies = p.add_mutually_exclusive_group()
    cookies.add_argument("--secure-cookies", dest="secure_cookies", action="store_true", default=None,
                         help="always mark the session cookie Secure (default: when the request came over https)")
    cookies.add_argument("--no-secure-cookies", dest="secure_cookies", action="store_false",
                         help="never mark it Secure")
    p.add_argument("--trust-proxy", action="store_true",
                   help="take the client address and scheme from X-Forwarded-For/-Proto (behind a reverse proxy)")
    p.set_defaults(handler=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from ..server.app import serve

    return serve(host=args.host, port=args.port, root_dir=args.root_dir, dashboards_dir=args.dashboards,
                 default_project=args.default_project, secure_cookies=args.secure_cookies,
                 trust_proxy=args.trust_proxy)
