"""The `helix` command with a setting it cannot use."""

from __future__ import annotations

import os
import subprocess
import sys


def test_every_helix_command_refuses_a_bad_setting_before_it_starts() -> None:
    env = {**os.environ, "HELIX_WEBHOOK_ALLOWED_NETWORKS": "bogus"}
    done = subprocess.run(
        [sys.executable, "-m", "helix.cli", "migrate"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "helix: HELIX_WEBHOOK_ALLOWED_NETWORKS: 'bogus' is not a network"


def test_serve_refuses_a_cors_origin_with_a_path_before_it_starts() -> None:
    env = {**os.environ, "HELIX_CORS_ORIGINS": "https://app.example.com,https://b.example/app"}
    done = subprocess.run(
        [sys.executable, "-m", "helix.cli", "serve"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "helix: HELIX_CORS_ORIGINS: 'https://b.example/app' is not an origin"
        " (scheme://host[:port], no path), or *"
    )
