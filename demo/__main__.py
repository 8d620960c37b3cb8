"""`dalle-demo` (or `python -m demo`): the app and the OpenAI-compatible Images API on one server.

Examples:
  dalle-demo                                     app at http://127.0.0.1:7860, API at http://127.0.0.1:7860/v1
  dalle-demo --host 0.0.0.0 --auth me:pw --api-key KEY     on your network, with a password and an API key
  dalle-demo --share --auth me:pw --api-key KEY  also at a public https://*.gradio.live link (needs internet)
  dalle-demo --host 0.0.0.0 --rate-limit 30/min  at most 30 API image requests per minute per client

Everything else works offline: nothing is downloaded at run time.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys

from dalle_core import DEFAULT_CHECKPOINT, DEFAULTS, MAX_CANDIDATES

API_KEY_ENV = "DALLE_DEMO_API_KEY"
EXPOSED_RATE_LIMIT = (
    10  # API image requests per minute per client: the default when others can reach the server
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line options."""
    parser = argparse.ArgumentParser(
        prog="dalle-demo",
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: %(default)s, this computer only; 0.0.0.0: your network)",
    )
    parser.add_argument("--port", type=int, default=7860, help="port (default: %(default)s)")
    parser.add_argument(
        "--share",
        action="store_true",
        help="also make a public https://*.gradio.live link through Gradio's tunnel, valid for a "
        "week (needs internet; the first use downloads Gradio's frpc tunnel client). "
        "Use it with --auth and --api-key",
    )
    parser.add_argument(
        "--auth",
        metavar="USER:PASS",
        type=_user_password,
        help="ask for this user name and password in the app (the API uses --api-key)",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_ENV),
        help=f"require 'Authorization: Bearer KEY' on the /v1 API (default: ${API_KEY_ENV}, "
        "else no key)",
    )
    parser.add_argument(
        "--checkpoint",
        default=str(DEFAULT_CHECKPOINT),
        metavar="DIR",
        help="model checkpoint folder (default: the shipped %(default)s)",
    )
    parser.add_argument(
        "--device",
        default="auto",
        choices=("auto", "cpu", "cuda"),
        help="where to run the model (default: %(default)s: cuda if available)",
    )
    parser.add_argument(
        "--threads",
        type=_threads,
        default=default_threads(),
        metavar="N",
        help="CPU threads for the model (default: $OMP_NUM_THREADS if set, else every core but one, which the "
        "server's own work needs: %(default)s here)",
    )
    parser.add_argument(
        "--max-candidates",
        type=_candidates,
        default=MAX_CANDIDATES,
        metavar="N",
        help="the most candidates the app may sample per request (default: %(default)s)",
    )
    parser.add_argument(
        "--api-candidates",
        type=_candidates,
        default=DEFAULTS.candidates,
        metavar="N",
        help="each API image is the best of this many samples (default: %(default)s)",
    )
    parser.add_argument(
        "--rate-limit",
        type=_rate,
        metavar="N/min",
        help="the most API image requests a client (an IP address) may make per minute, or 'off' "
        "(default: off when only this computer can reach the server; "
        f"{EXPOSED_RATE_LIMIT}/min with a --host other than loopback, or --share)",
    )
    args = parser.parse_args(argv)
    if args.rate_limit is None:
        args.rate_limit = EXPOSED_RATE_LIMIT if args.share or not _is_loopback(args.host) else 0
    return args


def main(argv: list[str] | None = None) -> None:
    """Load the model and serve until interrupted."""
    args = parse_args(argv)
    for warning in exposure_warnings(args.host, args.share, args.auth, args.api_key):
        print(f"warning: {warning}", file=sys.stderr)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported
    # imported here, so that --help and argument errors answer at once
    import torch
    import uvicorn

    from dalle_core import Dalle
    from dalle_core.checkpoint import CheckpointError

    from .server import create_app, launch_shared

    try:
        model = Dalle(args.checkpoint, args.device)
    except CheckpointError as e:
        sys.exit(f"dalle-demo: {e}")
    torch.set_num_threads(args.threads)
    print(f"Model: {args.checkpoint} on {model.device}, {args.threads} CPU thread(s)", flush=True)
    options = dict(
        api_key=args.api_key,
        auth=args.auth,
        api_candidates=args.api_candidates,
        max_candidates=args.max_candidates,
        rate_limit=args.rate_limit or None,
    )
    if args.rate_limit:
        print(f"API rate limit: {args.rate_limit} image requests per minute per client", flush=True)
    if args.share:
        demo, local_url, share_url = launch_shared(model, args.host, args.port, **options)
        urls = [local_url.rstrip("/")] + ([share_url.rstrip("/")] if share_url else [])
        print(
            "App: "
            + " and ".join(f"{u}/" for u in urls)
            + "\nAPI: "
            + " and ".join(f"{u}/v1" for u in urls),
            flush=True,
        )
        if not share_url:
            print(
                "warning: Gradio could not make a share link (it needs the internet)",
                file=sys.stderr,
            )
        demo.block_thread()
    else:
        url = f"http://{_url_host(args.host)}:{args.port}"
        print(f"App: {url}/\nAPI: {url}/v1  (OpenAI(base_url='{url}/v1', api_key=...))", flush=True)
        uvicorn.run(
            create_app(model, **options), host=args.host, port=args.port, log_level="warning"
        )


def default_threads() -> int:
    """The model's CPU threads unless told: $OMP_NUM_THREADS if set, else every core this process may use but one.
    The server's own work (Gradio's events, PNG encoding, HTTP) needs a core: on a 2-core machine, one sampling
    thread served the app's default request faster than two (benchmarks/README.md)."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) - 1)


def exposure_warnings(
    host: str, share: bool, auth: tuple[str, str] | None, api_key: str | None
) -> list[str]:
    """Warnings about who else can reach the server with these options."""
    warnings = []
    if not _is_loopback(host):
        warnings.append(
            f"listening on {host}: other computers can reach the app and the API"
            + ("" if auth and api_key else "; protect them with --auth USER:PASS and --api-key KEY")
        )
    if share and not auth:
        warnings.append("--share without --auth: anyone with the public link can use the app")
    if share and not api_key:
        warnings.append(
            "--share without --api-key: anyone with the public link can use the /v1 API"
        )
    return warnings


def _threads(text: str) -> int:
    """A --threads value: a whole number of at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name
        return False


def _url_host(host: str) -> str:
    """The host as written in a URL to open on this computer."""
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _user_password(text: str) -> tuple[str, str]:
    user, _, password = text.partition(":")
    if not user or not password:
        raise argparse.ArgumentTypeError("expected USER:PASS, e.g. --auth me:secret")
    return user, password


def _rate(text: str) -> int:
    """`N/min` (or `N`) as N requests per minute; `off` as 0."""
    if text.strip().lower() == "off":
        return 0
    count, _, unit = text.strip().partition("/")
    if count.isdigit() and int(count) >= 1 and unit.strip().lower() in ("", "min", "m", "minute"):
        return int(count)
    raise argparse.ArgumentTypeError(
        f"expected N/min with N a whole number from 1, or 'off', got {text!r}"
    )


def _candidates(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_CANDIDATES:
        raise argparse.ArgumentTypeError(
            f"expected a whole number from 1 to {MAX_CANDIDATES}, got {text!r}"
        )
    return n


if __name__ == "__main__":
    main()
