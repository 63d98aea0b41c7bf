"""Settings are checked when they are read, so a bad value stops a process at start."""

from __future__ import annotations

import pytest

from helix.config import SettingError, Settings


def test_allowed_webhook_networks_are_read_as_networks() -> None:
    env = {"HELIX_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8, ::1/128,10.1.2.3"}
    assert Settings.from_env(env).webhook_allowed_networks == ("127.0.0.0/8", "::1/128", "10.1.2.3")


@pytest.mark.parametrize("bad", ["localhost", "10.0.0.0/33", "300.1.1.1", "::1/200"])
def test_a_bad_allowed_webhook_network_is_refused_naming_the_setting(bad: str) -> None:
    with pytest.raises(ValueError, match="HELIX_WEBHOOK_ALLOWED_NETWORKS") as raised:
        Settings.from_env({"HELIX_WEBHOOK_ALLOWED_NETWORKS": f"127.0.0.0/8,{bad}"})
    assert repr(bad) in str(raised.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HELIX_PORT", "x"),
        ("HELIX_WORKER_LEASE_S", "soon"),
        ("HELIX_WEBHOOK_RETRY_SCHEDULE", "1,x"),
    ],
)
def test_a_value_of_the_wrong_kind_is_refused_naming_the_setting(name: str, value: str) -> None:
    with pytest.raises(SettingError, match=name):
        Settings.from_env({name: value})
