"""Pure rules of the credential API's domain layer: names, API key format, credential rules, plans."""

from __future__ import annotations

import math
import re
import uuid
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st
from taifa_api.domain import api_keys, credentials, verification
from taifa_api.domain.errors import (
    CredentialExists,
    CredentialLimitReached,
    DomainNotVerified,
    InvalidDomainName,
)
from taifa_api.domain.names import normalise_domain_name
from taifa_api.domain.plans import DEFAULT_PLAN_LIMITS, may_add_active_credential
from taifa_api.settings import Settings
from taifa_events.secrets import new_smtp_password


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Example.COM", "example.com"),
        ("  mail.example.com. ", "mail.example.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("a-b.co.ke", "a-b.co.ke"),
        ("bücher\u3002example", "xn--bcher-kva.example"),  # the full stops UTS #46 maps to "."
        ("例え\uff0eテスト", "xn--r8jz45g.xn--zckzah"),
        ("example.com\uff61", "example.com"),
        (".".join(["a" * 63] * 3) + "." + "b" * 54, ".".join(["a" * 63] * 3) + "." + "b" * 54),  # 246: the longest
    ],
)
def test_domain_names_are_normalised_to_lowercase_a_labels(raw: str, expected: str) -> None:
    assert normalise_domain_name(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "localhost",
        "-bad.example",
        "bad-.example",
        "a..example",
        "under_score.example",
        "sp ace.example",
        "user@example.com",
        "example.123",
        "http://example.com",
        ("a" * 64) + ".example",
        ".".join(["abcdefghij"] * 25) + ".com",
        # 247 characters: `_taifa.` + the name, where its verification record lives, would pass DNS's 253.
        ".".join(["a" * 63] * 3) + "." + "b" * 55,
    ],
)
def test_invalid_domain_names_are_refused(raw: str) -> None:
    with pytest.raises(InvalidDomainName):
        normalise_domain_name(raw)


@given(st.text(max_size=80))
def test_normalisation_either_refuses_or_yields_a_valid_ascii_name(raw: str) -> None:
    try:
        name = normalise_domain_name(raw)
    except InvalidDomainName:
        return
    assert name == name.lower() and name.isascii() and len(name) <= 253
    assert normalise_domain_name(name) == name


def test_generated_api_keys_match_the_format_and_their_checksum() -> None:
    keys = {api_keys.generate_api_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert re.fullmatch(r"tm_[A-Za-z0-9]{49}", key)
        assert api_keys.is_well_formed(key)


def test_a_key_with_one_character_changed_fails_the_checksum() -> None:
    key = api_keys.generate_api_key()
    position = 10
    replacement = "A" if key[position] != "A" else "B"
    assert not api_keys.is_well_formed(key[:position] + replacement + key[position + 1 :])


@pytest.mark.parametrize("candidate", ["", "tm_", "tm_short", "xx_" + "a" * 49, "tm_" + "!" * 49, "tm_" + "a" * 50])
def test_malformed_keys_are_not_well_formed(candidate: str) -> None:
    assert not api_keys.is_well_formed(candidate)


def test_api_key_entropy_is_at_least_256_bits() -> None:
    import math

    assert api_keys.RANDOM_LENGTH * math.log2(62) >= 256


def test_username_is_first_8_characters_of_the_account_id_at_the_domain() -> None:
    account = uuid.UUID("3f2a9c1b-0000-4000-8000-000000000000")
    assert credentials.username_for(account, "example.com") == "3f2a9c1b@example.com"


def test_passwords_are_url_safe_with_256_bits() -> None:
    passwords = {credentials.new_password() for _ in range(100)}
    assert len(passwords) == 100
    for password in passwords:
        assert re.fullmatch(r"[A-Za-z0-9_-]{43,}", password)


def test_passwords_never_start_with_a_dash_that_command_line_clients_read_as_an_option() -> None:
    # About 1 draw in 64 starts with "-": 2,000 draws would show ~31 of them.
    assert not [p for p in (credentials.new_password() for _ in range(2000)) if p.startswith("-")]


def _check(**overrides: object) -> None:
    args: dict[str, object] = {
        "domain_status": "verified",
        "domain_has_active_credential": False,
        "plan": "free",
        "active_credentials": 0,
        "limits": DEFAULT_PLAN_LIMITS,
    }
    credentials.check_may_create_credential(**{**args, **overrides})  # type: ignore[arg-type]


def test_credential_rules_in_order() -> None:
    _check()
    with pytest.raises(DomainNotVerified):
        _check(domain_status="pending", domain_has_active_credential=True)
    with pytest.raises(CredentialExists):
        _check(domain_has_active_credential=True, active_credentials=1)
    with pytest.raises(CredentialLimitReached):
        _check(active_credentials=1)


def test_plan_limits_default_and_unknown_plans_allow_nothing() -> None:
    assert DEFAULT_PLAN_LIMITS == {"free": 1, "starter": 5, "pro": 25, "enterprise": 250}
    assert may_add_active_credential("pro", 24, DEFAULT_PLAN_LIMITS)
    assert not may_add_active_credential("pro", 25, DEFAULT_PLAN_LIMITS)
    assert not may_add_active_credential("platinum", 0, DEFAULT_PLAN_LIMITS)


def test_verification_record_matches_exact_value_only() -> None:
    value = verification.new_record_value()
    assert value.startswith("taifa-verification=")
    assert verification.record_name("example.com") == "_taifa.example.com"
    assert verification.txt_proves_control(["v=spf1 -all", f" {value} "], value)
    assert not verification.txt_proves_control([value + "x", "taifa-verification="], value)


def test_settings_parse_plan_limits_and_nameservers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAIFA_API_PLAN_LIMIT_FREE", "3")
    monkeypatch.setenv("TAIFA_API_DNS_NAMESERVERS", "127.0.0.1:5353, 10.0.0.1,[::1]:53")
    settings = Settings()
    assert settings.plan_limits["free"] == 3
    assert settings.plan_limits["enterprise"] == 250
    assert settings.dns_nameservers == [("127.0.0.1", 5353), ("10.0.0.1", 53), ("::1", 53)]
    assert settings.api_port == 8080
    assert settings.api_smtp_host == "mail.govconnect.ke" and settings.api_smtp_port == 587


def test_every_setting_has_a_description() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description, name


@pytest.mark.parametrize("kind", ["smtp password", "api key"])
def test_secrets_draw_every_symbol_of_their_alphabet_evenly_for_at_least_128_bits(kind: str) -> None:
    # D5: the pattern and the checksum hold for a secret drawn from two letters too (~43 bits): the draws must use
    # the whole 62-symbol alphabet, each symbol about equally often (expected ~2,000 each; the bound is 10 sigma).
    if kind == "smtp password":
        bodies = [p[len("tmsmtp_") : -6] for p in (new_smtp_password() for _ in range(3000))]
    else:
        bodies = [
            k[len(api_keys.PREFIX) :][: api_keys.RANDOM_LENGTH]
            for k in (api_keys.generate_api_key() for _ in range(3000))
        ]
    counts = Counter("".join(bodies))
    expected = sum(counts.values()) / 62
    assert len(counts) == 62
    assert all(abs(count - expected) < 0.25 * expected for count in counts.values()), counts.most_common(3)
    assert min(len(body) for body in bodies) * math.log2(len(counts)) >= 128
