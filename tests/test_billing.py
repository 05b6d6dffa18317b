"""Billing: both pricing rules, every tier and quality, partial results, failures, balances."""

from __future__ import annotations

import asyncio
import tomllib
from importlib import resources
from typing import Any

import httpx
import pytest

from emulator import Settings, create_app
from emulator.core.billing import PriceTable
from emulator.core.catalogue import Catalogue

from .conftest import KEY, Client, MakeClient

PRICES: dict[str, Any] = tomllib.loads(
    resources.files("emulator").joinpath("data/prices.toml").read_text("utf-8")
)
CATALOGUE = Catalogue.load()
NANO_MODELS = [m for m, s in CATALOGUE.models.items() if s.family == "nano"]
SIZE_OF_TIER = {"1K": "1024x1024", "2K": "1920x1080", "4K": "3840x2160"}


def usage(client: Client, **params: str) -> dict[str, Any]:
    response = client.get("/_emulator/usage", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def entry(client: Client, task_id: str) -> dict[str, Any]:
    (found,) = usage(client, task_id=task_id)["entries"]
    return found


@pytest.mark.parametrize("model", NANO_MODELS)
def test_nano_costs_unit_price_times_images(client: Client, model: str) -> None:
    task_id = client.submit_ok({"model": model, "prompt": "x", "n": 3})
    held = entry(client, task_id)
    assert (held["state"], held["held"], held["amount"]) == ("held", PRICES["nano"][model] * 3, 0)
    client.advance(10_000)
    settled = entry(client, task_id)
    assert settled["state"] == "settled"
    assert (settled["images"], settled["amount"]) == (3, PRICES["nano"][model] * 3)


@pytest.mark.parametrize("tier", ["1K", "2K", "4K"])
@pytest.mark.parametrize("quality", ["low", "medium", "high"])
def test_gpt_costs_tier_times_quality_times_images(client: Client, tier: str, quality: str) -> None:
    payload = {
        "model": "gpt-image-2",
        "prompt": "x",
        "size": SIZE_OF_TIER[tier],
        "quality": quality.upper(),
        "n": 2,
    }
    task_id = client.submit_ok(payload)
    client.advance(10_000)
    settled = entry(client, task_id)
    assert (settled["tier"], settled["quality"]) == (tier, quality)
    assert settled["amount"] == PRICES["gpt"][tier][quality] * 2


def test_gpt_default_quality_is_billed_as_medium(client: Client) -> None:
    task_id = client.submit_ok({"model": "gpt-image-2", "prompt": "x", "size": "1024x1024"})
    assert entry(client, task_id)["held"] == PRICES["gpt"]["1K"]["medium"]


def test_2048x2048_is_billed_at_the_4k_tier_as_the_table_says(client: Client) -> None:
    task_id = client.submit_ok(
        {"model": "gpt-image-2", "prompt": "x", "size": "2048x2048", "quality": "low"}
    )
    assert entry(client, task_id)["held"] == PRICES["gpt"]["4K"]["low"]


def test_partial_result_pays_only_for_images_returned(client: Client) -> None:
    client.post("/_emulator/faults", json={"effect": {"kind": "partial", "images": 1}})
    task_id = client.submit_ok({"model": "NanoBanana", "prompt": "x", "n": 4})
    client.advance(10_000)
    settled = entry(client, task_id)
    assert (settled["images"], settled["amount"]) == (1, PRICES["nano"]["NanoBanana"])


def test_failed_task_is_released_and_costs_nothing(client: Client) -> None:
    client.put(f"/_emulator/balances/{KEY}", json={"balance": 100})
    client.post("/_emulator/faults", json={"effect": {"kind": "fail_task"}})
    task_id = client.submit_ok({"model": "NanoBanana", "prompt": "x"})
    assert client.get("/_emulator/balances").json()["balances"][0]["balance"] == 60
    client.advance(10_000)
    released = entry(client, task_id)
    assert (released["state"], released["amount"]) == ("released", 0)
    assert client.get("/_emulator/balances").json()["balances"][0]["balance"] == 100


def test_balance_runs_out_exactly_at_the_boundary(client: Client) -> None:
    price = PRICES["nano"]["NanoBanana2-0.5K"]
    client.put(f"/_emulator/balances/{KEY}", json={"balance": price * 3})
    payload = {"model": "NanoBanana2-0.5K", "prompt": "x"}
    assert [client.submit(payload).status_code for _ in range(3)] == [200, 200, 200]
    refused = client.submit(payload)
    assert refused.status_code == 403
    assert refused.json() == {
        "code": "insufficient_quota",
        "message": f"the balance of this API key cannot cover this task ({price} credits)",
        "data": None,
    }
    assert len(client.get("/_emulator/tasks").json()["tasks"]) == 3  # no task was created
    assert len(usage(client)["entries"]) == 3  # and nothing charged
    assert client.get("/_emulator/balances").json()["balances"] == [
        {"key": "sk-t…key", "balance": 0}
    ]


def test_a_bigger_task_than_the_balance_is_refused_but_a_smaller_one_passes(
    client: Client,
) -> None:
    client.put(f"/_emulator/balances/{KEY}", json={"balance": 50})
    assert client.submit({"model": "NanoBanana", "prompt": "x", "n": 2}).status_code == 403
    assert client.submit({"model": "NanoBanana", "prompt": "x", "n": 1}).status_code == 200


def test_balances_are_per_key(client: Client) -> None:
    client.put("/_emulator/balances/sk-poor", json={"balance": 0})
    poor = client.submit(
        {"model": "NanoBanana", "prompt": "x"}, headers={"Authorization": "Bearer sk-poor"}
    )
    assert poor.status_code == 403
    assert client.submit({"model": "NanoBanana", "prompt": "x"}).status_code == 200


def test_keys_alike_share_a_by_key_row_and_the_key_filter_tells_them_apart(
    client: Client,
) -> None:
    # docs/control-plane.md: by_key names a key by its masked form and groups by that name;
    # ?key= (the key itself) filters by its fingerprint, never shared.
    for key in ("sk-test-1-key", "sk-test-2-key", "sk-test-2-key"):
        answer = client.submit(
            {"model": "NanoBanana", "prompt": "x"}, headers={"Authorization": f"Bearer {key}"}
        )
        assert answer.status_code == 200, answer.text
    assert usage(client)["totals"]["by_key"]["sk-t…key"]["tasks"] == 3
    one = usage(client, key="sk-test-1-key")["totals"]
    two = usage(client, key="sk-test-2-key")["totals"]
    assert (list(one["by_key"]), one["by_key"]["sk-t…key"]["tasks"]) == (["sk-t…key"], 1)
    assert two["by_key"]["sk-t…key"]["tasks"] == 2


def test_null_balance_means_unlimited_and_bad_balances_are_rejected(client: Client) -> None:
    assert client.put(f"/_emulator/balances/{KEY}", json={"balance": 0}).status_code == 200
    assert client.submit({"model": "NanoBanana", "prompt": "x"}).status_code == 403
    assert client.put(f"/_emulator/balances/{KEY}", json={"balance": None}).status_code == 200
    assert client.submit({"model": "NanoBanana", "prompt": "x"}).status_code == 200
    for bad in ({"balance": -1}, {"balance": 1.5}, {"balance": "10"}, {}):
        response = client.put(f"/_emulator/balances/{KEY}", json=bad)
        assert response.status_code == 400
        assert "balance" in response.json()["message"]


def test_usage_totals_per_key_and_model_and_filters(client: Client) -> None:
    client.submit_ok({"model": "NanoBanana", "prompt": "x", "n": 2})
    client.submit(
        {"model": "NanoBanana2-0.5K", "prompt": "x"},
        headers={"Authorization": "Bearer sk-other-key"},
    )
    client.advance(10_000)
    body = usage(client)
    assert body["unit"] == "credits"
    totals = body["totals"]
    assert totals["paid"] == 2 * PRICES["nano"]["NanoBanana"] + PRICES["nano"]["NanoBanana2-0.5K"]
    assert totals["by_model"]["NanoBanana"]["images"] == 2
    assert set(totals["by_key"]) == {"sk-t…key", "sk-o…key"}
    assert len(usage(client, key="sk-other-key")["entries"]) == 1
    assert len(usage(client, model="NanoBanana")["entries"]) == 1
    assert KEY not in str(body)


def test_concurrent_submissions_never_overspend_a_balance() -> None:
    price = PRICES["nano"]["NanoBanana2-0.5K"]
    app = create_app(Settings(seed=3, clock="manual"))

    async def main() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await client.put("/_emulator/balances/sk-k", json={"balance": price * 7})
            body = {"model": "NanoBanana2-0.5K", "prompt": "x"}
            headers = {"Authorization": "Bearer sk-k"}
            responses = await asyncio.gather(
                *(client.post("/v1/images/tasks", json=body, headers=headers) for _ in range(40))
            )
            balances = (await client.get("/_emulator/balances")).json()["balances"]
            assert balances == [{"key": "s…k", "balance": 0}]
            return [r.status_code for r in responses]

    statuses = asyncio.run(main())
    assert statuses.count(200) == 7 and statuses.count(403) == 33


def test_price_table_must_cover_the_catalogue(tmp_path: Any) -> None:
    bad = tmp_path / "prices.toml"
    bad.write_text('[nano]\nNanoBanana = 1\n[gpt."1K"]\nlow = 1\n')
    with pytest.raises(ValueError, match="no price for model"):
        PriceTable.load(bad, CATALOGUE)
    bad.write_text("[nano]\nNanoBanana = -1\n")
    with pytest.raises(ValueError, match="whole number"):
        PriceTable.load(bad)


def test_a_new_key_beyond_max_balances_is_refused_naming_the_setting(
    make_client: MakeClient,
) -> None:
    client = make_client(max_balances=2)
    for key in ("sk-one", "sk-two"):
        assert client.put(f"/_emulator/balances/{key}", json={"balance": 5}).status_code == 200
    refused = client.put("/_emulator/balances/sk-three", json={"balance": 5})
    assert refused.status_code == 400
    body = refused.json()
    assert body["data"] is None and "max_balances" in body["message"]
    assert [row["key"] for row in client.get("/_emulator/balances").json()["balances"]] == [
        "s…e",
        "s…o",
    ]
    # The two keys still change theirs; removing one makes room for another.
    assert client.put("/_emulator/balances/sk-one", json={"balance": 9}).status_code == 200
    assert client.put("/_emulator/balances/sk-two", json={"balance": None}).status_code == 200
    assert client.put("/_emulator/balances/sk-three", json={"balance": 5}).status_code == 200
    emulator = client.app.state.emulator  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="max_balances"):  # Python callers: a ValueError
        asyncio.run(emulator.billing.set_balance("sk-four", 1))


def test_max_balances_has_a_range(make_client: MakeClient) -> None:
    for bad in (0, 100_001):
        with pytest.raises(ValueError, match="max_balances must be between 1 and 100000"):
            make_client(max_balances=bad)


def test_reset_clears_usage_and_balances(client: Client) -> None:
    client.put(f"/_emulator/balances/{KEY}", json={"balance": 5})
    client.put(f"/_emulator/balances/{KEY}", json={"balance": None})
    client.submit_ok({"model": "NanoBanana", "prompt": "x"})
    client.post("/_emulator/reset")
    assert usage(client)["entries"] == []
    assert client.get("/_emulator/balances").json()["balances"] == []


def test_whole_number_float_balance_is_taken_as_an_integer(client: Client) -> None:
    response = client.put("/_emulator/balances/sk-float", json={"balance": 51.0})
    assert response.status_code == 200
    assert response.json()["balance"] == 51
    assert client.put("/_emulator/balances/sk-float", json={"balance": 1.5}).status_code == 400


# -- refunds return what was taken, to where it was taken from ------------------------------
def balance_of(client: Client) -> list[dict[str, Any]]:
    balances: list[dict[str, Any]] = client.get("/_emulator/balances").json()["balances"]
    return balances


def test_a_task_submitted_without_a_balance_gives_nothing_back_to_a_balance_set_later(
    client: Client,
) -> None:
    client.post("/_emulator/faults", json={"effect": {"kind": "fail_task"}})
    task_id = client.submit_ok({"model": "NanoBanana", "prompt": "x"})  # unlimited: none taken
    client.put(f"/_emulator/balances/{KEY}", json={"balance": 50})
    client.advance(10_000)
    assert client.task(task_id)["status"] == "failed"
    assert balance_of(client) == [{"key": "sk-t…key", "balance": 50}]
    released = entry(client, task_id)
    assert (released["state"], released["taken"], released["refunded"]) == ("released", 0, 0)


def test_a_balance_set_while_a_hold_is_open_gets_the_unpaid_part_back_when_it_ends(
    client: Client,
) -> None:
    """Documented: PUT sets what is available now; what an open task took stays held and its
    unpaid part comes back to the key's balance when the task ends."""
    client.put(f"/_emulator/balances/{KEY}", json={"balance": 100})
    client.post("/_emulator/faults", json={"effect": {"kind": "fail_task"}})
    task_id = client.submit_ok({"model": "NanoBanana", "prompt": "x"})
    assert balance_of(client) == [{"key": "sk-t…key", "balance": 100 - 40}]
    client.put(f"/_emulator/balances/{KEY}", json={"balance": 50})
    client.advance(10_000)
    assert balance_of(client) == [{"key": "sk-t…key", "balance": 50 + 40}]
    released = entry(client, task_id)
    assert (released["taken"], released["refunded"]) == (40, 40)


def test_a_balance_removed_while_a_hold_is_open_gets_nothing_back(client: Client) -> None:
    """Documented: null makes the key unlimited; a hold that ends then has no balance to go
    back to, and a balance set afterwards is a new one."""
    client.put(f"/_emulator/balances/{KEY}", json={"balance": 100})
    client.post("/_emulator/faults", json={"effect": {"kind": "fail_task"}})
    task_id = client.submit_ok({"model": "NanoBanana", "prompt": "x"})
    client.put(f"/_emulator/balances/{KEY}", json={"balance": None})
    client.advance(10_000)
    assert client.task(task_id)["status"] == "failed"
    client.put(f"/_emulator/balances/{KEY}", json={"balance": 10})
    assert balance_of(client) == [{"key": "sk-t…key", "balance": 10}]
    released = entry(client, task_id)
    assert (released["taken"], released["refunded"]) == (40, 0)


# -- a bounded usage log -----------------------------------------------------------------------
def test_the_usage_log_keeps_the_newest_finished_charges_and_exact_totals(
    make_client: Any,
) -> None:
    client = make_client(usage_log_limit=5)
    client.put(f"/_emulator/balances/{KEY}", json={"balance": 100_000})
    price = PRICES["nano"]["NanoBanana"]
    finished = []
    for _ in range(20):  # each ends before the next is submitted: they finish in this order
        finished.append(client.submit_ok({"model": "NanoBanana", "prompt": "x"}))
        client.advance(10_000)
    running = client.submit_ok({"model": "NanoBanana", "prompt": "x", "n": 2})
    body = usage(client)
    kept = [e["task_id"] for e in body["entries"]]
    assert kept == [*finished[-5:], running]  # held charges are never dropped
    totals = body["totals"]
    assert (totals["paid"], totals["held"]) == (20 * price, 2 * price)
    row = totals["by_key"]["sk-t…key"]
    assert (row["tasks"], row["images"], row["paid"]) == (21, 20, 20 * price)
    assert balance_of(client) == [{"key": "sk-t…key", "balance": 100_000 - 22 * price}]
    only_settled = usage(client, state="settled")
    assert only_settled["totals"]["paid"] == 20 * price


def test_a_negative_usage_log_limit_is_refused_naming_it(client: Client) -> None:
    response = client.patch("/_emulator/config", json={"usage_log_limit": -1})
    assert response.status_code == 400
    assert "usage_log_limit must be between 0 and" in response.json()["message"]
    assert client.get("/_emulator/config").json()["usage_log_limit"] == 10_000


def test_setting_a_balance_through_the_emulator_settles_what_ended_first(
    client: Client,
) -> None:
    emulator = client.app.state.emulator  # type: ignore[attr-defined]
    client.put(f"/_emulator/balances/{KEY}", json={"balance": 100})
    client.post("/_emulator/faults", json={"effect": {"kind": "fail_task"}})
    task_id = client.submit_ok({"model": "NanoBanana", "prompt": "x"})
    client.advance(10_000)  # it failed; nobody has looked yet
    asyncio.run(emulator.billing.set_balance(KEY, 10))
    assert balance_of(client) == [{"key": "sk-t…key", "balance": 10}]
    released = entry(client, task_id)
    assert (released["state"], released["taken"], released["refunded"]) == ("released", 40, 40)
