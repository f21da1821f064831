"""The gateway process under fuzz.

Its pid, its memory from /proc, and which tracebacks in its log are failures of the node
rather than aiohttp's lines for a client that sent broken HTTP: all of it is
`tooling.gateway.GatewayProcess` now, the one launcher of tests, bench and deploy.
"""

from __future__ import annotations

from tooling.gateway import GatewayProcess

FuzzedNode = GatewayProcess  # the node under fuzz: its pid, memory and failures
