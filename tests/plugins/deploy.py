"""What the deployment tests share: the service names of docker-compose.yml, and nginx
(skipped without it unless CHAT_TEST_NGINX=require)."""

from __future__ import annotations

import os

import pytest

from tooling.processes import find_tool

GATEWAYS = ("gateway1", "gateway2", "gateway3")
CLUSTER_NODES = tuple(f"redis-node-{n}" for n in range(1, 7))
CLUSTER_INIT = "redis-cluster-init"


def nginx_or_skip() -> str:
    """The nginx binary; skips without one unless CHAT_TEST_NGINX=require."""
    nginx = find_tool("nginx")
    if nginx is None:
        if os.environ.get("CHAT_TEST_NGINX") == "require":
            pytest.fail("CHAT_TEST_NGINX=require, but nginx is not installed")
        pytest.skip("needs nginx (apt-get install nginx); CI installs it")
    return str(nginx)
