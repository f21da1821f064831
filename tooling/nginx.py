"""nginx in front of gateway nodes: deploy/nginx.conf rendered for local ports, and the
nginx process that serves it in the foreground."""

from __future__ import annotations

import re
import signal
from collections.abc import Sequence
from pathlib import Path

from tooling.processes import ROOT, Process, find_tool

NGINX_CONF = ROOT / "deploy" / "nginx.conf"

# The lines of deploy/nginx.conf that differ between compose and the local cluster.
LISTEN_LINE = re.compile(r"^(\s*)listen\s+8080;$", re.MULTILINE)
UPSTREAM_LINE = re.compile(r"^(\s*)server\s+gateway\d+:8080(\s[^;]*)?;\n", re.MULTILINE)


class NginxConfError(ValueError):
    """deploy/nginx.conf no longer has the lines the local rendering replaces."""


def render_nginx_conf(template: str, listen: str, upstreams: Sequence[str]) -> str:
    """deploy/nginx.conf with `listen`, and each upstream's servers set to `upstreams`.

    The compose lines are found by pattern: every block of `server gatewayN:8080 ...;`
    lines becomes one line per address, with the block's parameters. A file without
    exactly one `listen 8080;` or without such a block is an error, so the two
    deployments cannot silently drift apart.
    """
    if len(LISTEN_LINE.findall(template)) != 1:
        raise NginxConfError(f"{NGINX_CONF} must have exactly one `listen 8080;` line")
    blocks: list[list[re.Match[str]]] = []
    for match in UPSTREAM_LINE.finditer(template):
        if blocks and blocks[-1][-1].end() == match.start():
            blocks[-1].append(match)
        else:
            blocks.append([match])
    if not blocks:
        raise NginxConfError(f"{NGINX_CONF} has no `server gatewayN:8080` lines")
    parts, done = [], 0
    for block in blocks:
        indent, params = block[0].group(1), block[0].group(2) or ""
        parts.append(template[done : block[0].start()])
        parts.extend(f"{indent}server {address}{params};\n" for address in upstreams)
        done = block[-1].end()
    parts.append(template[done:])
    return LISTEN_LINE.sub(lambda m: f"{m.group(1)}listen {listen};", "".join(parts))


def nginx_argv(conf: Path) -> list[str]:
    """nginx in the foreground, with its prefix, temp dirs and pid file beside `conf`."""
    prefix = conf.parent
    nginx = find_tool("nginx") or "nginx"
    return [nginx, "-p", f"{prefix}/", "-c", str(conf), "-e", "stderr",
            "-g", f"daemon off; pid {prefix / 'nginx.pid'};"]  # fmt: skip


def nginx_process(
    prefix: Path, listen: str, upstreams: Sequence[str], *, log: Path | None,
    inherit_output: bool = False, die_with_parent: bool = False,
) -> Process:  # fmt: skip
    """An nginx (not started) serving deploy/nginx.conf rendered into `prefix`, stopped
    gracefully with SIGQUIT."""
    prefix.mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(render_nginx_conf(NGINX_CONF.read_text(), listen, upstreams))
    return Process(
        "nginx",
        nginx_argv(conf),
        stop_signal=signal.SIGQUIT,
        log=log,
        inherit_output=inherit_output,
        die_with_parent=die_with_parent,
    )
