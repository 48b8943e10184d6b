"""The local cloud answers what a client sends wrong as Vast's API does: a 4xx with a JSON body, never a
dropped connection or a half-created instance; keys are scoped as on Vast. Run alone with
`pytest -m conformance`."""

import subprocess

import pytest
import requests
from conftest import BIN, wait_for

pytestmark = pytest.mark.conformance

CREATE = {"client_id": "me", "image": "img", "disk": 10, "onstart": "sleep 60", "runtype": "ssh"}


def api(lc, path):
    return f"{lc.url}/api/v0{path}"


def auth(key):
    return {"Authorization": f"Bearer {key}"}


def test_bad_bodies_and_parameters_get_400_with_json_and_create_nothing(cloud):
    s = requests.Session()
    for body in (b"{not json", b"[1, 2]", b'"text"'):
        r = s.put(api(cloud, "/asks/1001/"), data=body, headers={**auth(cloud.api_key), "Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["success"] is False, (body, r.text)
    r = s.put(api(cloud, "/asks/1001/"), json={**CREATE, "disk": "abc"}, headers=auth(cloud.api_key))
    assert r.status_code == 400 and "bad parameter" in r.json()["msg"]
    for too_big in ({"onstart": "x" * 5000}, {"env": {"K": "v" * 300}}):
        r = s.put(api(cloud, "/asks/1001/"), json={**CREATE, **too_big}, headers=auth(cloud.api_key))
        assert 400 <= r.status_code < 500 and r.json()["success"] is False, r.text
    assert cloud.cloud.instances == {}  # nothing was created by a bad request
    r = s.post(api(cloud, "/bundles/"), json={"limit": "abc"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_args"
    r = s.put(api(cloud, "/asks/1001/"), data=b"x" * (5 * 1024 * 1024), headers=auth(cloud.api_key))
    assert r.status_code == 413


def test_keep_alive_survives_bodies_the_route_does_not_read(cloud):
    s = requests.Session()  # one connection for all of these
    r = s.put(api(cloud, "/asks/1001/"), json=CREATE, headers=auth(cloud.api_key))
    iid = r.json()["new_contract"]
    assert s.delete(api(cloud, f"/instances/{iid}/"), json={"unread": "body"}, headers=auth(cloud.api_key)).ok
    for _ in range(3):
        r = s.get(api(cloud, f"/instances/{iid}/"), data=b'{"also": "unread"}', headers=auth(cloud.api_key))
        assert r.status_code == 200 and r.headers["Content-Type"] == "application/json", r.text
        assert s.get(api(cloud, "/gpu_names/unique/"), data=b"x" * 1000).json()["gpu_names"]


def test_keys_as_on_vast(cloud):
    # Offer search needs no key; the account key also works as ?api_key= (older clients).
    assert requests.post(api(cloud, "/bundles/"), json={}).json()["offers"]
    assert requests.get(api(cloud, f"/users/current/?api_key={cloud.api_key}")).status_code == 200
    r = requests.put(api(cloud, "/asks/1001/"), json=CREATE, headers=auth(cloud.api_key))
    iid = r.json()["new_contract"]
    inst = cloud.cloud.instances[iid]
    assert wait_for(lambda: inst.status == "running", 30)
    key = inst.api_key  # the instance's own key: its own instance, nothing else
    assert requests.get(api(cloud, f"/instances/{iid}/"), headers=auth(key)).status_code == 200
    assert requests.get(api(cloud, "/users/current/"), headers=auth(key)).status_code == 401
    assert requests.put(api(cloud, f"/instances/request_logs/{iid}/"), json={}, headers=auth(key)).status_code == 401
    assert requests.get(api(cloud, "/instances/"), headers=auth(key)).status_code == 401
    assert requests.delete(api(cloud, f"/instances/{iid}/"), json={}, headers=auth(key)).ok
    revoked = requests.get(api(cloud, f"/instances/{iid}/"), headers=auth(key))
    assert revoked.status_code == 404 and revoked.json()["error"] == "auth_error"  # as Vast answers a dead key
    # An unknown key is a 404 auth_error on Vast, also where no key is needed; no key at all is a 401.
    for method, path in (("get", "/users/current/"), ("get", f"/instances/{iid}/"), ("post", "/bundles/")):
        r = getattr(requests, method)(api(cloud, path), headers=auth("not-a-key"))
        assert (r.status_code, r.json()["error"]) == (404, "auth_error"), (path, r.text)
    assert requests.get(api(cloud, "/users/current/")).status_code == 401


def test_serve_on_a_port_in_use_says_so_in_one_line(cloud):
    port = int(cloud.url.rsplit(":", 1)[1])
    p = subprocess.run(
        [str(BIN / "vast-launch"), "local-cloud", "serve", "--port", str(port)], capture_output=True, text=True, timeout=600
    )
    assert p.returncode == 1
    assert p.stderr.strip().startswith("error: local cloud: cannot listen on 127.0.0.1:") and len(p.stderr.splitlines()) == 1


def test_offers_carry_every_field_the_vastai_client_filters_on(cloud):
    from vastai.api.query import offers_fields

    offers = requests.post(api(cloud, "/bundles/"), json={"limit": 10}).json()["offers"]
    assert offers and all(offers_fields <= set(o) for o in offers), [sorted(offers_fields - set(o)) for o in offers]
    # a filter on a field the launcher never asks for selects by its value, as on Vast
    for q, expected in (
        ({"cpu_cores": {"gte": 1}}, len(offers)),
        ({"static_ip": {"eq": True}}, 0),
        ({"ubuntu_version": {"eq": "22.04"}}, len(offers)),
        ({"gpu_name": {"eq": "Local CPU"}}, len(offers)),
        ({"gpu_name": {"eq": "Local_CPU"}}, 0),  # the client turns _ into a space; the service compares as sent
    ):
        found = requests.post(api(cloud, "/bundles/"), json={**q, "limit": 10}).json()["offers"]
        assert len(found) == expected, (q, found)
