"""Keyed pseudonyms for client addresses.

Each client address becomes two HMAC-SHA256 pseudonyms, truncated to `hex_chars` hex
characters:

- `client_id` hashes the address itself, so a client keeps its id across files and runs.
- `prefix_id` hashes its network (an IPv4 /24 and an IPv6 /64 by default) or, for a
  hostname logged with Apache's HostnameLookups, its parent domain. Clients of one
  network or provider therefore share a prefix id.

The key comes from an environment variable. Without the key, nobody can rebuild the
mapping by hashing all 2**32 IPv4 addresses. The scoring service reuses this module, so
`Pseudonymizer` does no I/O after construction and caches its results.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import logging
import os
import re
from ipaddress import IPv4Address, IPv6Address
from typing import Any

logger = logging.getLogger(__name__)

# Pseudonyms kept per Pseudonymizer when the caller passes no size (conf sets
# data.pseudonym_cache_size). One entry takes about 300 bytes
# (measured with tracemalloc on CPython 3.11, not counting the address string).
DEFAULT_CACHE_SIZE = 65_536

# Prefix that marks a pseudonymized address in free text, as in "ip:3f2a9c0d1e4b5a6f".
REDACTED_PREFIX = "ip:"

_SHA256_HEX_CHARS = hashlib.sha256().digest_size * 2

# Digits and dots only: such a string is an IPv4 address or invalid, never a hostname.
_IPV4_SHAPE_RE = re.compile(r"[0-9.]+")
# A valid IPv4 address in the form that ipaddress accepts (no leading zeros).
_IPV4_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_IPV4_RE = re.compile(rf"{_IPV4_OCTET}(?:\.{_IPV4_OCTET}){{3}}")

# RFC 1123 host names. Underscores are not allowed by the RFC but occur in real DNS names.
_HOSTNAME_MAX_CHARS = 253
_HOSTNAME_RE = re.compile(
    r"(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*"
    r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?"
)

# Candidates for IP literals in free text. Each match is validated before it is replaced.
# The IPv4 pattern allows a dot after the address ("from 192.0.2.1.") and accepts
# version strings such as "rv:1.9.2.3" as well, which only over-redacts.
_IPV6_CANDIDATE_RE = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9A-Fa-f]{1,4})?(?![\w:])"
)
_IPV4_CANDIDATE_RE = re.compile(r"(?<![0-9])([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})(?![0-9])")
_IPV4_MAX_OCTET = 255


class InvalidClientAddress(ValueError):
    """A client address that is neither an IP address nor a host name.

    The message never contains the address, because it may be a malformed client IP.
    """


def parse_client_address(text: str) -> IPv4Address | IPv6Address | str:
    """Parse a logged client address into an IP address or a lower-case host name.

    Accepts IPv4, IPv6 in brackets ("[2001:db8::1]") or with a zone id ("fe80::1%eth0",
    the zone is dropped), and host names. An IPv4-mapped IPv6 address
    ("::ffff:192.0.2.1") is returned as the IPv4 address, so a dual-stack server logs
    one client under one pseudonym. Raises InvalidClientAddress for anything else.
    """
    candidate = text.strip()
    if candidate.startswith("[") and candidate.endswith("]"):
        candidate = candidate[1:-1]

    if ":" in candidate:
        try:
            address = IPv6Address(candidate.split("%", 1)[0])
        except ValueError:
            raise InvalidClientAddress("invalid IPv6 client address; expected e.g. 2001:db8::1") from None
        mapped = address.ipv4_mapped
        return address if mapped is None else mapped

    if _IPV4_SHAPE_RE.fullmatch(candidate):
        try:
            return IPv4Address(candidate)
        except ValueError:
            raise InvalidClientAddress("invalid IPv4 client address; expected four octets 0-255") from None

    if len(candidate) <= _HOSTNAME_MAX_CHARS and _HOSTNAME_RE.fullmatch(candidate):
        return candidate.rstrip(".").lower()
    raise InvalidClientAddress("invalid client address; expected an IPv4 or IPv6 address or a host name")


def is_client_address(text: str) -> bool:
    """Return whether `parse_client_address` accepts `text`, checking plain IPv4 quickly."""
    if _IPV4_RE.fullmatch(text):
        return True
    try:
        parse_client_address(text)
    except InvalidClientAddress:
        return False
    return True


def parent_domain(hostname: str) -> str:
    """Return the host name without its first label, or the name itself if it has one label."""
    _, dot, parent = hostname.partition(".")
    return parent if dot else hostname


class Pseudonymizer:
    """Keyed, truncated HMAC-SHA256 pseudonyms for client addresses.

    Results are cached per instance in an LRU cache of `cache_size` entries.
    """

    def __init__(
        self,
        key: bytes,
        hex_chars: int,
        ipv4_prefix_len: int,
        ipv6_prefix_len: int,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        _check_range("hex_chars", hex_chars, 1, _SHA256_HEX_CHARS)
        _check_range("ipv4_prefix_len", ipv4_prefix_len, 0, ipaddress.IPV4LENGTH)
        _check_range("ipv6_prefix_len", ipv6_prefix_len, 0, ipaddress.IPV6LENGTH)
        _check_range("cache_size", cache_size, 0, None)
        if not key:
            raise ValueError("pseudonym key is empty; set a non-empty secret key")

        self._mac = hmac.new(key, digestmod=hashlib.sha256)
        self._hex_chars = hex_chars
        self._prefix_lens = {4: ipv4_prefix_len, 6: ipv6_prefix_len}
        self._cached_pseudonyms = functools.lru_cache(maxsize=cache_size)(self._compute_pseudonyms)

    @classmethod
    def from_config(cls, data_cfg: Any) -> Pseudonymizer:
        """Build a Pseudonymizer from the `data` config node.

        The key is read from the environment variable named by `pseudonym_key_env`.
        When it is unset or empty, `pseudonym_key_default` is used and one WARNING is
        logged. The key itself is never logged.
        """
        env_name = str(data_cfg.pseudonym_key_env)
        key_text = os.environ.get(env_name, "")
        if not key_text:
            logger.warning(
                "environment variable %s is not set, so pseudonyms use the public development key "
                "from data.pseudonym_key_default. Set %s to a secret in production, because anyone "
                "who has the default key can recompute the pseudonym of any IP address.",
                env_name,
                env_name,
            )
            key_text = str(data_cfg.pseudonym_key_default)

        return cls(
            key=key_text.encode("utf-8"),
            hex_chars=int(data_cfg.pseudonym_hex_chars),
            ipv4_prefix_len=int(data_cfg.ipv4_prefix_len),
            ipv6_prefix_len=int(data_cfg.ipv6_prefix_len),
            cache_size=int(data_cfg.get("pseudonym_cache_size", DEFAULT_CACHE_SIZE)),
        )

    def pseudonyms(self, address: str) -> tuple[str, str]:
        """Return `(client_id, prefix_id)` for a client address.

        Raises InvalidClientAddress when `address` is not an IP address or host name.
        """
        return self._cached_pseudonyms(address)

    def client_id(self, ip: str) -> str:
        """Return the pseudonym of one client address."""
        return self._cached_pseudonyms(ip)[0]

    def prefix_id(self, ip: str) -> str:
        """Return the pseudonym of the network (or parent domain) of a client address."""
        return self._cached_pseudonyms(ip)[1]

    def _compute_pseudonyms(self, text: str) -> tuple[str, str]:
        address = parse_client_address(text)
        if isinstance(address, str):
            return self._hash(address), self._hash(parent_domain(address))

        prefix_len = self._prefix_lens[address.version]
        network = ipaddress.ip_network((address, prefix_len), strict=False)
        return self._hash(str(address)), self._hash(str(network))

    def _hash(self, text: str) -> str:
        mac = self._mac.copy()
        mac.update(text.encode("utf-8"))
        return mac.hexdigest()[: self._hex_chars]


def redact_ips(text: str, pseudonymizer: Pseudonymizer) -> str:
    """Replace every IPv4 and IPv6 literal in `text` with `ip:<client_id>`.

    Candidates that are not valid addresses (times such as 13:55:36, the IPv6
    unspecified address "::") are left as they are. IPv4 octets with leading zeros count
    as addresses. Host names are not replaced.
    """
    redacted = _IPV6_CANDIDATE_RE.sub(lambda match: _redact_ipv6(match, pseudonymizer), text)
    return _IPV4_CANDIDATE_RE.sub(lambda match: _redact_ipv4(match, pseudonymizer), redacted)


def _redact_ipv6(match: re.Match[str], pseudonymizer: Pseudonymizer) -> str:
    try:
        address = IPv6Address(match[0])
    except ValueError:
        return match[0]
    if address.is_unspecified:
        return match[0]
    return REDACTED_PREFIX + pseudonymizer.client_id(match[0])


def _redact_ipv4(match: re.Match[str], pseudonymizer: Pseudonymizer) -> str:
    octets = [int(group) for group in match.groups()]
    if max(octets) > _IPV4_MAX_OCTET:
        return match[0]
    return REDACTED_PREFIX + pseudonymizer.client_id(".".join(map(str, octets)))


def _check_range(name: str, value: int, low: int, high: int | None) -> None:
    if value < low or (high is not None and value > high):
        bound = f"at least {low}" if high is None else f"between {low} and {high}"
        raise ValueError(f"invalid {name}={value}: it must be {bound}; fix it in conf/data/default.yaml")
