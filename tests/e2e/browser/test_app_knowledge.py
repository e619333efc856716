"""An app's knowledge in Chromium (the app's settings page): the datasets it searches chosen
from the workspace's, a rerank model that orders their passages together, stored as Dify's
`dataset_configs` has it and shown again after a reload; a weight out of range is refused in
the server's words."""

from __future__ import annotations

from typing import Any

from tests import support
from tests.e2e.browser.conftest import axe, shot
from tests.e2e.conftest import Admin


def test_an_apps_datasets_and_their_rerank_model_are_chosen_on_its_settings_page(
    console: Any, service_stack: support.Stack, service_admin: Admin, upstream: Any
) -> None:
    client = service_admin.client
    added = client.post(
        "/console/api/workspaces/current/model-providers",
        json={"name": "Team rerank", "base_url": upstream.base_url, "api_key": "sk-rerank-1",
              "rerank_models": ["team-rerank"]},
    )  # fmt: skip
    assert added.status_code == 201, added.text
    reference = added.json()["data"]["reference"]
    ids = {}
    for name in ("Harbour guide", "Gull notes"):
        made = client.post(
            "/console/api/datasets", json={"name": name, "indexing_technique": "high_quality"}
        )
        assert made.status_code in (200, 201), made.text
        ids[name] = made.json()["data"]["id"]
    app = client.post("/console/api/apps", json={"name": "Harbour helper", "mode": "chat"})
    app_id = app.json()["data"]["id"]

    page = console
    page.goto(f"{service_stack.base_url}/#/apps/{app_id}")
    section = page.get_by_role("region", name="Knowledge")
    section.wait_for()
    for name in ids:
        section.get_by_label(f"{name} (high_quality)").check()
    section.get_by_label("Order of the datasets' passages").select_option("reranking_model")
    section.get_by_label("Rerank model").select_option(label="team-rerank (Team rerank)")
    section.get_by_label("Passages kept (top K, 1–10)").fill("3")
    section.get_by_role("button", name="Save knowledge").click()
    section.get_by_text("Knowledge saved.").wait_for()
    axe(page, context="app knowledge")
    shot(page, "app-knowledge")

    stored = client.get(f"/console/api/apps/{app_id}/model-config").json()["data"]
    found = stored["dataset_configs"]
    assert [e["dataset"]["id"] for e in found["datasets"]["datasets"]] == list(ids.values())
    assert (found["top_k"], found["reranking_enable"], found["reranking_mode"]) == (
        3, True, "reranking_model",
    )  # fmt: skip
    assert found["reranking_model"] == {
        "reranking_provider_name": reference, "reranking_model_name": "team-rerank",
    }  # fmt: skip

    # After a reload the page shows what is stored.
    page.reload()
    section = page.get_by_role("region", name="Knowledge")
    section.wait_for()
    assert section.get_by_label("Gull notes (high_quality)").is_checked()
    assert section.get_by_label("Order of the datasets' passages").input_value() == (
        "reranking_model"
    )

    # A weight out of range: refused, in the server's words; nothing stored.
    section.get_by_label("Order of the datasets' passages").select_option("weighted_score")
    section.get_by_label("Weight of meaning (0–1; keywords get the rest)").fill("2")
    section.get_by_role("button", name="Save knowledge").click()
    alert = section.get_by_role("alert")
    alert.wait_for()
    assert "dataset_configs.weights.vector_setting.vector_weight" in alert.inner_text()
    shot(page, "app-knowledge-refused")
    again = client.get(f"/console/api/apps/{app_id}/model-config").json()["data"]
    assert again["dataset_configs"] == found
