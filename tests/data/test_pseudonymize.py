"""Tests for src/data/pseudonymize.py: keyed client and prefix pseudonyms and IP redaction."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re

import pytest

from src.config import compose_config
from src.data.pseudonymize import (
    InvalidClientAddress,
    Pseudonymizer,
    is_client_address,
    parse_client_address,
    redact_ips,
)

KEY = b"test-key-one"
OTHER_KEY = b"test-key-two"
HEX_CHARS = 16


def make(key: bytes = KEY, hex_chars: int = HEX_CHARS) -> Pseudonymizer:
    return Pseudonymizer(key, hex_chars=hex_chars, ipv4_prefix_len=24, ipv6_prefix_len=64)


def test_client_id_is_truncated_hmac():
    expected = hmac.new(KEY, b"192.0.2.1", hashlib.sha256).hexdigest()[:HEX_CHARS]

    assert make().client_id("192.0.2.1") == expected


def test_prefix_id_hashes_network():
    expected = hmac.new(KEY, b"192.0.2.0/24", hashlib.sha256).hexdigest()[:HEX_CHARS]

    assert make().prefix_id("192.0.2.77") == expected


def test_ids_stable_across_instances():
    assert make().client_id("198.51.100.7") == make().client_id("198.51.100.7")
    assert make().prefix_id("198.51.100.7") == make().prefix_id("198.51.100.7")


def test_ids_have_configured_length():
    client_id, prefix_id = make(hex_chars=10).pseudonyms("198.51.100.7")

    assert re.fullmatch(r"[0-9a-f]{10}", client_id)
    assert re.fullmatch(r"[0-9a-f]{10}", prefix_id)


def test_different_key_different_ids():
    assert make(KEY).client_id("198.51.100.7") != make(OTHER_KEY).client_id("198.51.100.7")
    assert make(KEY).prefix_id("198.51.100.7") != make(OTHER_KEY).prefix_id("198.51.100.7")


def test_ipv4_slash24_grouping():
    pseudonymizer = make()

    assert pseudonymizer.prefix_id("192.0.2.1") == pseudonymizer.prefix_id("192.0.2.254")
    assert pseudonymizer.client_id("192.0.2.1") != pseudonymizer.client_id("192.0.2.254")
    assert pseudonymizer.prefix_id("192.0.2.1") != pseudonymizer.prefix_id("192.0.3.1")


def test_ipv6_slash64_grouping():
    pseudonymizer = make()

    assert pseudonymizer.prefix_id("2001:db8:1:2::1") == pseudonymizer.prefix_id("2001:db8:1:2:ffff:ffff:ffff:ffff")
    assert pseudonymizer.client_id("2001:db8:1:2::1") != pseudonymizer.client_id("2001:db8:1:2::2")
    assert pseudonymizer.prefix_id("2001:db8:1:2::1") != pseudonymizer.prefix_id("2001:db8:1:3::1")


def test_prefix_lengths_from_arguments():
    wide = Pseudonymizer(KEY, hex_chars=HEX_CHARS, ipv4_prefix_len=16, ipv6_prefix_len=48)

    assert wide.prefix_id("192.0.2.1") == wide.prefix_id("192.0.99.1")
    assert wide.prefix_id("2001:db8:1:2::1") == wide.prefix_id("2001:db8:1:9::1")


@pytest.mark.parametrize(
    ("variant", "canonical"),
    [
        ("[2001:db8::1]", "2001:db8::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("[fe80::1%25eth0]", "fe80::1"),
        ("2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("[::ffff:c000:201]", "192.0.2.1"),
    ],
)
def test_ip_forms_share_ids(variant, canonical):
    pseudonymizer = make()

    assert pseudonymizer.client_id(variant) == pseudonymizer.client_id(canonical)
    assert pseudonymizer.prefix_id(variant) == pseudonymizer.prefix_id(canonical)


def test_hostname_hashed_with_parent_prefix():
    pseudonymizer = make()
    first = "crawl-66-249-66-1.googlebot.com"
    second = "crawl-66-249-66-2.googlebot.com"

    assert pseudonymizer.client_id(first) != pseudonymizer.client_id(second)
    assert pseudonymizer.prefix_id(first) == pseudonymizer.prefix_id(second)
    assert pseudonymizer.prefix_id(first) == pseudonymizer.client_id("googlebot.com")
    assert pseudonymizer.client_id("Crawl-66-249-66-1.GoogleBot.com.") == pseudonymizer.client_id(first)


def test_single_label_hostname_is_own_prefix():
    pseudonymizer = make()

    assert pseudonymizer.prefix_id("localhost") == pseudonymizer.client_id("localhost")


@pytest.mark.parametrize("text", ["999.1.1.1", "1.2.3", "192.0.2.01", "2001:db8::g", "", "-", "a b", "host!"])
def test_invalid_address_rejected(text):
    with pytest.raises(InvalidClientAddress) as caught:
        make().client_id(text)

    assert not is_client_address(text)
    if text:
        assert text not in str(caught.value)


def test_parse_client_address_types():
    assert str(parse_client_address("::ffff:192.0.2.1")) == "192.0.2.1"
    assert str(parse_client_address("[2001:db8::1]")) == "2001:db8::1"
    assert parse_client_address("Host.Example.") == "host.example"


@pytest.mark.parametrize(
    ("name", "value"),
    [("hex_chars", 0), ("hex_chars", 65), ("ipv4_prefix_len", 33), ("ipv6_prefix_len", -1), ("cache_size", -1)],
)
def test_invalid_settings_rejected(name, value):
    settings = {"hex_chars": HEX_CHARS, "ipv4_prefix_len": 24, "ipv6_prefix_len": 64, "cache_size": 8}
    settings[name] = value

    with pytest.raises(ValueError, match=name):
        Pseudonymizer(KEY, **settings)


def test_empty_key_rejected():
    with pytest.raises(ValueError, match="empty"):
        make(key=b"")


def test_uncached_instance_matches_cached():
    uncached = Pseudonymizer(KEY, hex_chars=HEX_CHARS, ipv4_prefix_len=24, ipv6_prefix_len=64, cache_size=0)

    assert uncached.pseudonyms("192.0.2.1") == make().pseudonyms("192.0.2.1")


def test_from_config_reads_env_key(monkeypatch, caplog):
    data_cfg = compose_config().data
    monkeypatch.setenv(data_cfg.pseudonym_key_env, "secret-from-env")

    with caplog.at_level(logging.WARNING):
        pseudonymizer = Pseudonymizer.from_config(data_cfg)

    assert pseudonymizer.client_id("192.0.2.1") == make(b"secret-from-env").client_id("192.0.2.1")
    assert not caplog.records


def test_from_config_default_key_warns_once(monkeypatch, caplog):
    data_cfg = compose_config().data
    monkeypatch.delenv(data_cfg.pseudonym_key_env, raising=False)

    with caplog.at_level(logging.WARNING):
        pseudonymizer = Pseudonymizer.from_config(data_cfg)
        pseudonymizer.client_id("192.0.2.1")

    default = make(str(data_cfg.pseudonym_key_default).encode())
    assert pseudonymizer.client_id("192.0.2.1") == default.client_id("192.0.2.1")
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert data_cfg.pseudonym_key_env in warnings[0].getMessage()
    assert "production" in warnings[0].getMessage()
    assert str(data_cfg.pseudonym_key_default) not in warnings[0].getMessage()


def test_redact_ipv4_and_ipv6():
    pseudonymizer = make()
    text = 'from 192.0.2.1, via [2001:db8::5]:443 and ::ffff:198.51.100.9 then 203.0.113.4.'

    redacted = redact_ips(text, pseudonymizer)

    assert "192.0.2.1" not in redacted
    assert "2001:db8::5" not in redacted
    assert "198.51.100.9" not in redacted
    assert "203.0.113.4" not in redacted
    assert f"ip:{pseudonymizer.client_id('192.0.2.1')}" in redacted
    assert f"[ip:{pseudonymizer.client_id('2001:db8::5')}]:443" in redacted
    assert f"ip:{pseudonymizer.client_id('198.51.100.9')}" in redacted
    assert redacted.endswith(f"ip:{pseudonymizer.client_id('203.0.113.4')}.")


def test_redact_zero_padded_ipv4():
    pseudonymizer = make()

    redacted = redact_ips("client 010.001.002.003 seen", pseudonymizer)

    assert redacted == f"client ip:{pseudonymizer.client_id('10.1.2.3')} seen"


@pytest.mark.parametrize(
    "text",
    [
        "[17/May/2015:10:05:03 +0000] at 13:55:36",
        "Chrome/32.0.1700.77 Safari/537.36",
        "JFactory::getConfig();exit",
        "version 256.1.1.1 and 1.2.3",
    ],
)
def test_redact_leaves_non_addresses(text):
    assert redact_ips(text, make()) == text
