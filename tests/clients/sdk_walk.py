"""One walk through the Vast API with a `vastai` SDK generation's Python client.

Run by tests/test_client_generations.py, with the interpreter of the environment that holds the client
(the installed `vastai`, or `vastai-sdk` 0.1.x in a throwaway virtualenv, which authenticates with
`?api_key=` only). Needs VAST_URL and VAST_API_KEY; prints `RESULT <json>` of what the client got back.
"""

import inspect
import json
import os
import sys
import time

try:
    from vastai_sdk import VastAI  # vastai-sdk 0.1.x
except ImportError:
    from vastai import VastAI  # vastai 1.x


def until(what, get, timeout=300.0):
    end = time.time() + timeout
    while time.time() < end:
        value = get()
        if value:
            return value
        time.sleep(0.2)
    sys.exit(f"timed out waiting for {what}")


def main():
    v = VastAI(api_key=os.environ["VAST_API_KEY"], server_url=os.environ["VAST_URL"], raw=True)
    seen = {}

    def found(query, **kw):
        return [o["id"] for o in v.search_offers(query=query, **kw)]

    queries = (
        "reliability>0.9",
        "num_gpus=1 gpu_name=Local_CPU",
        "geolocation in [LO,US]",
        "geolocation=US",
        "dph_total<=4",
        "dph_total<=1",
    )
    seen["search"] = {q: sorted(found(q)) for q in queries}
    seen["search_order"] = found("", order="reliability-")

    def show(iid):
        return v.show_instance(id=iid) or {}

    ssh = v.create_instance(
        id=1001,
        image="img",
        disk=10,
        label="walk",
        onstart_cmd="echo hello-walk; for i in $(seq 1 1500); do echo line-$i; done; sleep 600",
    )["new_contract"]
    until("running", lambda: show(ssh).get("actual_status") == "running")

    # 0.1.x names the instance INSTANCE_ID and takes keywords only; 1.x names it instance_id
    id_name = next(iter(inspect.signature(v.logs).parameters))

    def log_lines(**kw):
        text = v.logs(**{id_name: ssh}, **kw) or ""
        return [ln for ln in text.splitlines() if ln.startswith(("line-", "hello-"))]

    until("the last log line", lambda: "line-1500" in log_lines())
    seen["logs"] = len(log_lines())
    seen["logs_tail"] = log_lines(tail="3")
    seen["logs_filter"] = log_lines(tail="2000", filter="hello-")

    v.label_instance(id=ssh, label="walk-renamed")
    seen["label"] = show(ssh).get("label")
    v.stop_instance(id=ssh)
    until("stopped", lambda: show(ssh).get("actual_status") == "stopped")
    v.start_instance(id=ssh)
    until("running again", lambda: show(ssh).get("actual_status") == "running")
    v.reboot_instance(id=ssh)

    args = v.create_instance(id=1002, image="img", disk=10, args=["bash", "-c", "echo args-$((6*7))"])["new_contract"]
    until("the args run type's exit", lambda: show(args).get("actual_status") == "exited")

    seen["invoices"] = v.show_invoices()
    for iid in (ssh, args):
        v.destroy_instance(id=iid)
    seen["after_destroy"] = v.show_instance(id=ssh)
    seen["ids"] = {"ssh": ssh, "args": args}
    print("RESULT " + json.dumps(seen))


if __name__ == "__main__":
    main()
