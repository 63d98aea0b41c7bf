"""schemathesis against a live `helix serve`: every operation of the OpenAPI document, fuzzed
(examples, then generated data) and chained through the document's links (stateful), with
every check schemathesis has. Any failure fails the test, with schemathesis's report.

The run is bounded: few examples per operation, a fixed seed, short long-polls (the document
shows the server's own `wait` limits, so generated waits are short), a timeout per request and
one for the whole run. The server's other settings are the defaults, except that webhook URLs
may name any address (generated host names must not be refused for the address they resolve
to) and the rate limits are high enough that a run is not limited.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.served import serving

ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).with_name("schemathesis.toml")
RUN_TIMEOUT = 600.0


@pytest.fixture
async def server(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    async with serving(
        database_url,
        tmp_path / "data",
        HELIX_ACCESS_LOG="false",
        HELIX_PHASE_USER="helix-phase-fuzz",
        HELIX_MAX_WAIT_SECONDS="1",
        HELIX_CLAIM_MAX_WAIT="1",
        HELIX_STREAM_HEARTBEAT_INTERVAL="1",
        HELIX_WEBHOOK_ALLOWED_NETWORKS="0.0.0.0/0,::/0",
        HELIX_RATE_LIMIT_PER_MINUTE="1000000",
        HELIX_RATE_LIMIT_ANONYMOUS_PER_MINUTE="1000000",
    ) as found:
        yield found.url, found.admin_key


async def test_schemathesis_finds_nothing_against_the_live_server(
    server: tuple[str, str], tmp_path: Path
) -> None:
    url, key = server
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "SCHEMATHESIS_HOOKS": "tests.e2e.schemathesis_hooks",
        "NO_COLOR": "1",
    }
    report = tmp_path / "schemathesis.txt"
    with report.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "schemathesis.cli",
            "--config-file", str(CONFIG),
            "run", f"{url}/api/v1/openapi.json",
            "--header", f"Authorization: Bearer {key}",
            "--checks", "all",
            # DELETE /projects/{id} archives: the project stays readable (archived) and can be
            # unarchived, as documented, which this check takes for a resource not deleted.
            "--exclude-checks", "use_after_free",
            "--phases", "examples,fuzzing,stateful",
            "--seed", "1",
            "--workers", "2",
            cwd=ROOT, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        try:
            await asyncio.wait_for(proc.wait(), RUN_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise AssertionError(f"schemathesis ran over {RUN_TIMEOUT:g}s") from None
    text = report.read_text(errors="replace")
    assert proc.returncode == 0, text[-20000:]
    # The run reached every operation but the WebSocket, and the stateful phase followed links.
    selected = re.search(r"Operations:\s+(\d+) selected / (\d+) total", text)
    assert selected is not None, text[-5000:]
    assert int(selected[1]) == int(selected[2]) - 1 >= 60, selected[0]
    links = re.search(r"API Links:\s+(\d+) covered", text)
    assert links is not None and int(links[1]) > 0, text[-5000:]
