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


def test_trusted_proxies_and_the_anonymous_rate_limit_are_read() -> None:
    settings = Settings.from_env(
        {
            "HELIX_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1",
            "HELIX_RATE_LIMIT_ANONYMOUS_PER_MINUTE": "30",
            "HELIX_RATE_LIMIT_ANONYMOUS_BURST": "5",
        }
    )
    assert settings.trusted_proxies == ("10.0.0.0/8", "192.0.2.1")
    assert (settings.rate_limit_anonymous_per_minute, settings.rate_limit_anonymous_burst) == (
        30,
        5,
    )
    assert Settings.from_env({}).trusted_proxies == ()


@pytest.mark.parametrize(
    ("name", "value"),
    [("HELIX_TRUSTED_PROXIES", "10.0.0.0/8,proxy"), ("HELIX_RATE_LIMIT_ANONYMOUS_PER_MINUTE", "x")],
)
def test_a_bad_proxy_or_anonymous_limit_is_refused_naming_the_setting(
    name: str, value: str
) -> None:
    with pytest.raises(SettingError, match=name):
        Settings.from_env({name: value})


def test_cors_origins_are_read_as_a_browser_sends_them() -> None:
    env = {"HELIX_CORS_ORIGINS": "https://App.Example.com:443, http://127.0.0.1:8080,http://[::1]"}
    assert Settings.from_env(env).cors_origins == (
        "https://app.example.com",
        "http://127.0.0.1:8080",
        "http://[::1]",
    )
    assert Settings.from_env({}).cors_origins == ()


@pytest.mark.parametrize(
    "bad",
    [
        "app.example.com",
        "https://app.example.com/",
        "https://a.example/x",
        "ftp://a.example",
        "https://u@a.example",
        "https://a.example:99999",
        "https://a.example?x=1",
        "https://",
    ],
)
def test_a_cors_origin_that_is_not_scheme_host_and_port_is_refused_naming_the_setting(
    bad: str,
) -> None:
    with pytest.raises(SettingError, match="HELIX_CORS_ORIGINS") as raised:
        Settings.from_env({"HELIX_CORS_ORIGINS": f"http://ok.example,{bad}"})
    assert repr(bad) in str(raised.value)


def test_credentials_are_refused_for_any_origin_but_allowed_for_named_ones() -> None:
    with pytest.raises(SettingError, match="HELIX_CORS_ALLOW_CREDENTIALS"):
        Settings.from_env({"HELIX_CORS_ORIGINS": "*", "HELIX_CORS_ALLOW_CREDENTIALS": "true"})
    named = {"HELIX_CORS_ORIGINS": "https://a.example", "HELIX_CORS_ALLOW_CREDENTIALS": "true"}
    assert Settings.from_env(named).cors_allow_credentials is True
    assert Settings.from_env({"HELIX_CORS_ORIGINS": "*"}).cors_origins == ("*",)
    with pytest.raises(SettingError, match="HELIX_CORS_ALLOW_CREDENTIALS"):
        Settings.from_env({"HELIX_CORS_ALLOW_CREDENTIALS": "maybe"})


def test_the_artifact_limits_default_to_10_and_100_mib_and_0_means_none() -> None:
    defaults = Settings.from_env({})
    assert (defaults.artifact_max_bytes, defaults.job_artifacts_max_bytes) == (
        10 * 2**20,
        100 * 2**20,
    )
    unlimited = Settings.from_env(
        {"HELIX_ARTIFACT_MAX_BYTES": "0", "HELIX_JOB_ARTIFACTS_MAX_BYTES": "5000"}
    )
    assert (unlimited.artifact_max_bytes, unlimited.job_artifacts_max_bytes) == (0, 5000)


@pytest.mark.parametrize("name", ["HELIX_ARTIFACT_MAX_BYTES", "HELIX_JOB_ARTIFACTS_MAX_BYTES"])
@pytest.mark.parametrize("value", ["-1", "ten", "1.5"])
def test_an_artifact_limit_that_is_not_a_number_of_bytes_is_refused(name: str, value: str) -> None:
    with pytest.raises(SettingError, match=name):
        Settings.from_env({name: value})
