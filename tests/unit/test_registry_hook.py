"""The per-request hook, the seam fault injection will use, on an in-process server."""

from __future__ import annotations

import requests

from atlas_ci.registry.server import RegistryHandler, RegistryServer, Route


def test_a_hook_sees_routed_authenticated_requests_and_can_answer(server: RegistryServer) -> None:
    seen: list[tuple[str, dict[str, str]]] = []

    def hook(handler: RegistryHandler, route: Route) -> bool:
        seen.append((route.name, dict(route.params)))
        if route.name == "get_artifact":
            handler.send_json(503, {"errors": ["injected"]})
            return True
        return False

    server.request_hook = hook
    headers = {"X-Atlas-Token": "tok"}
    assert requests.get(server.url + "/api/v1/authenticate", headers=headers, timeout=5).ok
    answer = requests.get(server.url + "/api/v1/artifacts/u/n", headers=headers, timeout=5)
    assert answer.status_code == 503
    assert answer.json() == {"errors": ["injected"]}
    assert requests.get(server.url + "/api/v1/authenticate", timeout=5).status_code == 401
    assert seen == [("authenticate", {}), ("get_artifact", {"user": "u", "name": "n"})]
