"""The project's tooling, shared by the tests, the benchmark, the fuzzer, the fault
campaign and `make cluster`: free ports (`ports`), child processes with their logs
(`processes`), readiness waits (`ready`), redis-server and a Redis Cluster (`redis`),
nginx in front of gateway nodes (`nginx`), the local cluster of `make cluster`
(`cluster`), a gateway node for end-to-end tests (`gateway`), a raw WebSocket client
for the load generator (`wsclient`) and one on a bare socket that writes anything, for
the tests and the fuzzer (`rawsocket`), and a TCP proxy that cuts or blackholes links
(`tcp_proxy`).

It is installed with the server (`make .venv/.installed-server`) and imports nothing
from the development tools.
"""
