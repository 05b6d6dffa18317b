"""The outside tools the benchmarks need, installed on first use.

- wrk, the load generator (Debian package ``wrk``; installed with apt-get when running as root);
- Stoplight Prism (npm ``@stoplight/prism-cli``) and WireMock's standalone jar (npm
  ``wiremock``), both into ``benchmarks/.tools/`` (gitignored), never globally.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOOLS = HERE / ".tools"
PRISM_SPEC = "@stoplight/prism-cli@5"
WIREMOCK_SPEC = "wiremock@3"


class ToolMissing(RuntimeError):
    """A tool is absent and could not be installed; the message says how to get it."""


def _run(cmd: list[str], timeout: float) -> None:
    subprocess.run(cmd, check=True, timeout=timeout, stdout=subprocess.DEVNULL)


def wrk() -> str:
    """Path of wrk, installing the Debian package when it is missing and we are root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.name == "posix" and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        print("installing wrk (apt-get install wrk) ...", flush=True)
        # First from the package lists as they are; if that fails, refresh them and retry.
        for refresh in (False, True):
            try:
                if refresh:
                    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, timeout=300)
                subprocess.run(
                    ["apt-get", "install", "-y", "-qq", "wrk"],
                    check=False,
                    env=env,
                    timeout=300,
                    stdout=subprocess.DEVNULL,
                )
            except subprocess.TimeoutExpired:
                break
            if shutil.which("wrk"):
                break
    found = shutil.which("wrk")
    if not found:
        raise ToolMissing("wrk is not installed: run `apt-get install wrk` (as root)")
    return found


def _npm_install() -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise ToolMissing("npm is not installed: Prism and WireMock come from the npm registry")
    TOOLS.mkdir(parents=True, exist_ok=True)
    print(f"installing {PRISM_SPEC} and {WIREMOCK_SPEC} into {TOOLS} ...", flush=True)
    _run(
        [
            npm,
            "install",
            "--prefix",
            str(TOOLS),
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            PRISM_SPEC,
            WIREMOCK_SPEC,
        ],
        timeout=600,
    )


def prism() -> list[str]:
    """The command that runs Prism (installed locally on first use)."""
    entry = TOOLS / "node_modules" / "@stoplight" / "prism-cli" / "dist" / "index.js"
    if not entry.exists():
        _npm_install()
    if not entry.exists():
        raise ToolMissing(f"Prism did not install into {TOOLS}")
    node = shutil.which("node")
    if node is None:
        raise ToolMissing("node is not installed: Prism needs it")
    return [node, str(entry)]


def prism_version() -> str:
    """Prism's version as installed (its package.json), e.g. "5.14.2"."""
    package = TOOLS / "node_modules" / "@stoplight" / "prism-cli" / "package.json"
    try:
        return str(json.loads(package.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return "5"


def wiremock_jar() -> Path:
    """WireMock's standalone jar, from the npm package ``wiremock`` (installed on first use)."""
    build = TOOLS / "node_modules" / "wiremock" / "build"
    jars = sorted(build.glob("wiremock-standalone-*.jar")) if build.exists() else []
    if not jars:
        _npm_install()
        jars = sorted(build.glob("wiremock-standalone-*.jar"))
    if not jars:
        raise ToolMissing(f"the WireMock jar is not in {build}")
    return jars[-1]


def java() -> str:
    found = shutil.which("java")
    if found is None:
        raise ToolMissing("java is not installed: WireMock needs Java 11 or later")
    return found
