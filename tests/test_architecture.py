"""The layers of gateway/ as docs/architecture.md draws them: each module imports only
from its own layer and the layers below it, and the lowest layers import no I/O.

The imports are read from the source (ast), every one of them: inside functions and
under `TYPE_CHECKING` too, since a cycle hidden there is still a cycle."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

GATEWAY = Path(__file__).parent.parent / "gateway"

# Lowest first; what each layer's modules may import from gateway/ (its own layer
# included). The broker and the connections know nothing of each other.
LAYERS = ("protocol", "support", "broker", "connection", "chat", "edge")
MAY_IMPORT = {
    "protocol": {"protocol"},
    "support": {"protocol", "support"},
    "broker": {"protocol", "support", "broker"},
    "connection": {"protocol", "support", "connection"},
    "chat": {"protocol", "support", "broker", "connection", "chat"},
    "edge": set(LAYERS),
}

# Packages whose every module is in one layer (subpackages included).
PACKAGES = {
    "gateway.codecs": "protocol",
    "gateway.unicode": "protocol",
    "gateway.broker": "broker",
}
MODULES = {
    "protocol": (
        "__init__", "access", "commands", "confusables", "controls", "errors", "events",
        "names", "offsets",
    ),
    "support": (
        "collector", "config", "flags", "log_filter", "metrics", "proxies", "ratelimit",
        "redis_url", "server_log", "setting_rules", "tasks", "workers",
    ),
    "connection": ("auth", "budgets", "credentials", "inbound", "link", "session", "wire"),
    "chat": (
        "backend_http", "handlers", "hooks", "hub", "membership", "moderation", "node",
        "node_status", "presence", "releases", "room_activity", "room_directory",
    ),
    "edge": (
        "__main__", "access_log", "admission", "app", "console_api", "guard",
        "head", "http", "operator_api", "served", "serving", "ws",
    ),
}  # fmt: skip
PREFIXES = {"feed": "chat"}  # feed.py, feed_delivery.py and any feed_*.py to come

# Third-party packages a layer may not import (the standard library is always allowed).
# The protocol layer is pure: only orjson besides the standard library.
PROTOCOL_THIRD_PARTY = {"orjson"}
FORBIDDEN_THIRD_PARTY = {"broker": {"aiohttp"}}


def module_name(path: Path) -> str:
    """`gateway/broker/base.py` -> `gateway.broker.base` (a package by its __init__)."""
    parts = path.relative_to(GATEWAY.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 2 else parts)


def layer_of(module: str) -> str | None:
    """The layer of a gateway module, None when the table does not place it."""
    for package, layer in PACKAGES.items():
        if module == package or module.startswith(package + "."):
            return layer
    short = module.removeprefix("gateway.")
    if module == "gateway":
        short = "__init__"
    for layer, names in MODULES.items():
        if short in names:
            return layer
    for prefix, layer in PREFIXES.items():
        if short == prefix or short.startswith(prefix + "_"):
            return layer
    return None


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports (relative imports resolved), at any depth."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            # `from gateway.codecs import json` imports the submodule.
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def gateway_target(imported: str) -> str | None:
    """The gateway module an import names, the longest one that exists."""
    if imported != "gateway" and not imported.startswith("gateway."):
        return None
    parts = imported.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        relative = Path(*candidate.split("."))
        base = GATEWAY.parent / relative
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            return candidate
    return None


def violations(module: str, imported: Iterable[str]) -> list[str]:
    """What of `imported` the module `module` may not import, each with why."""
    layer = layer_of(module)
    assert layer is not None, module
    wrong = []
    for name in sorted(imported):
        target = gateway_target(name)
        top = name.split(".")[0]
        if target is not None:
            target_layer = layer_of(target)
            why = f"{target} ({target_layer})"
            if target_layer not in MAY_IMPORT[layer] and why not in wrong:
                wrong.append(why)
        elif top == "gateway" or not top:
            continue
        elif layer == "protocol" and top not in sys.stdlib_module_names:
            if top not in PROTOCOL_THIRD_PARTY:
                wrong.append(f"{name} (third-party)")
        elif top in FORBIDDEN_THIRD_PARTY.get(layer, set()):
            wrong.append(f"{name} (third-party)")
    return wrong


SOURCES = sorted(GATEWAY.rglob("*.py"))


def test_every_module_has_a_layer() -> None:
    """Guards against a new module nobody placed: put it in MODULES (and in
    docs/architecture.md)."""
    unplaced = [module_name(p) for p in SOURCES if layer_of(module_name(p)) is None]
    assert not unplaced, unplaced


@pytest.mark.parametrize("path", SOURCES, ids=module_name)
def test_a_module_imports_only_its_layer_and_those_below(path: Path) -> None:
    """Guards against a layer reaching up: the broker into the connections or aiohttp,
    a codec into anything stateful, the chat layer into the HTTP endpoints."""
    module = module_name(path)
    if layer_of(module) is None:
        pytest.skip("not placed (test_every_module_has_a_layer says so)")
    wrong = violations(module, imports_of(path))
    assert not wrong, f"{module} ({layer_of(module)}) may not import: {', '.join(wrong)}"


@pytest.mark.parametrize(
    ("module", "imported", "refused"),
    [
        ("gateway.broker.redis.live", ["gateway.session", "aiohttp.web"], 2),
        ("gateway.broker.redis.subscriber", ["gateway.broker.base", "gateway.events"], 0),
        ("gateway.codecs.json", ["gateway.wire", "redis", "orjson", "json"], 2),
        ("gateway.codecs.text", ["gateway.codecs.frames", "gateway.names"], 0),
        ("gateway.hub", ["gateway.ws", "gateway.http", "gateway.session"], 2),
        ("gateway.session", ["gateway.hub", "gateway.broker.base", "aiohttp"], 2),
        ("gateway.ws", ["gateway.hub", "gateway.broker.base", "aiohttp.web"], 0),
    ],
)
def test_the_rules_refuse_what_they_should(module: str, imported: list[str], refused: int) -> None:
    """Guards against rules that pass everything (or nothing), on made-up imports."""
    assert len(violations(module, imported)) == refused, violations(module, imported)
