"""Which offer is rented: the cloud's order is a hint, our ranking decides (resources.rank_by), and the
launch rents the offer ranked first."""

import json

from conftest import cloud_env, creates, invoke, no_live_processes, run_cli, stage_config

from vast_launch.config import Resources
from vast_launch.vast.offers import rank_offers


def _offer(oid: int, dph: float, dlperf: float, reliability: float) -> dict:
    return {"id": oid, "dph_total": dph, "dlperf": dlperf, "reliability": reliability, "duration": 3600.0}


def test_price_ranking_puts_the_cheapest_first_whatever_the_order_found():
    found = [_offer(1, 0.90, 10, 0.999), _offer(2, 0.20, 1, 0.95), _offer(3, 0.45, 5, 0.99)]
    ranked = rank_offers(found, Resources(rank_by="price"))
    assert [r.offer["id"] for r in ranked] == [2, 3, 1]
    assert [r.rank for r in ranked] == [1, 2, 3] and ranked[0].reason.startswith("#1 of 3 by $/h")


def test_equal_prices_go_to_the_more_reliable_offer():
    ranked = rank_offers([_offer(1, 0.3, 1, 0.95), _offer(2, 0.3, 1, 0.99)], Resources(rank_by="price"))
    assert [r.offer["id"] for r in ranked] == [2, 1]


def test_dlperf_per_dollar_ranking_prefers_more_work_per_dollar_over_a_lower_price():
    found = [_offer(1, 0.20, 1, 0.99), _offer(2, 0.90, 18, 0.99), _offer(3, 0.45, 5, 0.99)]  # 5, 20 and 11.1 per $
    ranked = rank_offers(found, Resources(rank_by="dlperf_per_dollar"))
    assert [r.offer["id"] for r in ranked] == [2, 3, 1]


def test_the_launch_rents_the_cheapest_fitting_offer(repo_factory, cloud):
    cloud.cloud.set_offer(1001, dph_base=0.50, reliability=0.999, reliability2=0.999)
    cloud.cloud.set_offer(1002, dph_base=0.20, reliability=0.990, reliability2=0.990)
    repo = repo_factory(stage_config([{"name": "a", "command": "echo a"}]))
    shown = invoke(["offers", "--config", "configs/test.yaml", "--json"], cwd=repo, env=cloud_env(cloud))
    assert shown.returncode == 0, shown.stderr
    ranked = json.loads(shown.stdout)
    assert [o["id"] for o in ranked] == [1002, 1001]
    assert ranked[0]["dph_total"] < ranked[1]["dph_total"]
    p = run_cli(["--auto-shutdown", "--config", "configs/test.yaml", "--yes", "--follow"], cwd=repo, env=cloud_env(cloud))
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr
    (create,) = creates(cloud)
    assert create["path"].rstrip("/").endswith("/1002")
    (inst,) = cloud.cloud.instances.values()
    assert inst.offer["id"] == 1002 and no_live_processes(cloud)
