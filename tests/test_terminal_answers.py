"""A terminal task's kept answer (emulator/http/terminal.py) goes through the app's opt-in
middleware like any answer (the direct dispatch steps aside for it), and each poll's answer
is its own: what a middleware adds to one is not in the next."""

from __future__ import annotations

from .conftest import MakeClient

NANO = {"model": "NanoBanana2-0.5K", "prompt": "x"}


def test_cors_headers_are_added_once_to_every_poll_of_a_finished_task(
    make_client: MakeClient,
) -> None:
    origin = "http://localhost:5173"
    client = make_client(cors_origins=[origin])
    task_id = client.submit_ok(NANO)
    client.advance(10_000)
    polls = [
        client.get(f"/v1/images/tasks/{task_id}", headers={"Origin": origin}) for _ in range(3)
    ]
    assert polls[0].json()["data"]["status"] == "succeeded"
    headers = [poll.headers.multi_items() for poll in polls]
    assert headers[0] == headers[1] == headers[2]
    assert [name for name, _ in headers[0]].count("access-control-allow-origin") == 1
