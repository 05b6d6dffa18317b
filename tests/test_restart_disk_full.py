"""A SQLite store whose disk fills up while serving: 503 naming the file and the cause, never a
500; nothing half-done, money conserved, and the emulator serves again once there is room."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from emulator import Settings

from .conftest import KEY
from .test_persistence import running

#: Run in a child process (the file size limit is the process's; pytest's own files must not
#: feel it): a few submissions, then the limit lowered to the files' size (a full disk, as
#: SQLite sees it: every write that grows a file fails with EFBIG, which Python does not turn
#: into SIGXFSZ), submissions until one is refused, the limit lifted, one more submission.
FILL_THE_DISK = """
import json, os, resource, sys
from starlette.testclient import TestClient
from emulator import Settings, create_app

path = sys.argv[1]
app = create_app(Settings(seed=5, clock="manual", store="sqlite://" + path))
auth = {"Authorization": "Bearer " + sys.argv[2]}
job = {"model": "NanoBanana2-0.5K", "prompt": "a cat " + "x" * 400}
seen = []
with TestClient(app, headers=auth, raise_server_exceptions=False) as client:
    granted = client.put("/_emulator/balances/" + sys.argv[2], json={"balance": 10**6})
    assert granted.status_code == 200
    accepted = [client.post("/v1/images/tasks", json=job).status_code for _ in range(3)]
    full = max(os.path.getsize(path + end) for end in ("", "-wal"))
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (full, hard))
    for _ in range(300):
        response = client.post("/v1/images/tasks", json=job)
        seen.append((response.status_code, response.json()["message"]))
        if response.status_code != 200:
            break
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    after = client.post("/v1/images/tasks", json=job).status_code
print(json.dumps({"accepted": accepted, "seen": seen, "after": after}))
"""


def test_a_full_disk_answers_503_naming_the_file_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "emulator.db"
    child = subprocess.run(
        [sys.executable, "-c", FILL_THE_DISK, str(path), KEY],
        capture_output=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr.decode()[-3000:]
    report = json.loads(child.stdout)
    assert report["accepted"] == [200, 200, 200]
    statuses = [status for status, _ in report["seen"]]
    # The disk filled up within the 300 submissions, and the refusal was a 503, not a 500.
    assert statuses[-1] == 503, report["seen"][-1]
    assert set(statuses[:-1]) <= {200}
    message = report["seen"][-1][1]
    assert f"sqlite://{path}" in message and ("disk" in message or "full" in message), message
    assert report["after"] == 200  # room again: served again, no transaction left open

    # Restarted on the file: exactly the accepted tasks, each with its charge, money conserved.
    accepted = 3 + statuses.count(200) + 1
    with running(Settings(seed=5, clock="manual", store=f"sqlite://{path}")) as again:
        tasks = again.get("/_emulator/tasks").json()["tasks"]
        usage = again.get("/_emulator/usage").json()
        assert len(tasks) == accepted
        assert {t["task"]["task_id"] for t in tasks} == {e["task_id"] for e in usage["entries"]}
        balance = again.get("/_emulator/balances").json()["balances"][0]["balance"]
        totals = usage["totals"]
        assert balance + totals["taken"] - totals["refunded"] == 10**6
        assert totals["taken"] == 20 * accepted
