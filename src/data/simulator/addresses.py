"""Client addresses drawn only from ranges reserved for documentation and benchmarking.

IPv4 comes from `addresses.ipv4_network` (198.18.0.0/15 by default, RFC 2544) and IPv6 from
`addresses.ipv6_network` (2001:db8::/32 by default, RFC 3849), so no real person's address
appears in simulated logs. The pool never hands out one address twice, except that a NAT
address is shared on purpose by the caller.
"""

from __future__ import annotations

import ipaddress
import logging

import numpy as np

from src.data.simulator.settings import Settings

logger = logging.getLogger(__name__)

# Host numbers 0 and 255 of a /24 are network and broadcast addresses on most LANs; skip them.
RESERVED_HOSTS: frozenset[int] = frozenset({0, 255})
IPV4_BLOCK_SIZE = 256


class AddressPool:
    """Unique IPv4 and IPv6 addresses, plus /24 blocks reserved for rotating proxies."""

    def __init__(self, cfg: Settings, rng: np.random.Generator) -> None:
        self._rng = rng
        self._ipv4 = _network(cfg, "ipv4_network", 4)
        self._ipv6 = _network(cfg, "ipv6_network", 6)
        self.ipv6_share = cfg.prob("ipv6_share")
        if int(cfg.number("proxy_prefix_len")) != 24:
            raise ValueError(f"invalid {cfg.where}.proxy_prefix_len={cfg.raw('proxy_prefix_len')}: only 24 is supported")
        if self._ipv4.prefixlen > 24:
            raise ValueError(f"invalid {cfg.where}.ipv4_network={self._ipv4}: use a /24 or larger network")

        self._block_count = self._ipv4.num_addresses // IPV4_BLOCK_SIZE
        self._used_ipv4: set[int] = set()
        self._used_ipv6: set[int] = set()
        self._proxy_blocks: set[int] = set()
        self._proxy_block_order = rng.permutation(self._block_count)
        self._next_proxy_block = 0
        self._current_proxy_block: int | None = None
        self._host_order: np.ndarray | None = None
        self._next_host = 0
        self._ipv4_exhausted = False

    def draw(self) -> str:
        """Return a new address: IPv6 with probability `ipv6_share`, otherwise IPv4 (IPv6 once IPv4 is used up)."""
        if self._rng.random() < self.ipv6_share:
            return self.draw_ipv6()
        return self.draw_ipv4(fallback_ipv6=True)

    def draw_ipv4(self, fallback_ipv6: bool = False) -> str:
        """Return a new IPv4 address outside the proxy blocks.

        When the IPv4 network is used up, return IPv6 if `fallback_ipv6` is set (with one
        warning), otherwise raise ValueError.
        """
        if self._host_order is None:
            self._host_order = self._rng.permutation(self._ipv4.num_addresses)
        while self._next_host < len(self._host_order):
            offset = int(self._host_order[self._next_host])
            self._next_host += 1
            if self._is_free_host(offset):
                self._used_ipv4.add(offset)
                return str(self._ipv4.network_address + offset)

        if not fallback_ipv6:
            raise ValueError(
                f"the IPv4 pool {self._ipv4} is used up after {len(self._used_ipv4)} addresses; "
                "lower --scale or family counts, or configure a larger simulate.addresses.ipv4_network"
            )
        if not self._ipv4_exhausted:
            logger.warning("IPv4 pool %s is used up; further clients get IPv6 addresses", self._ipv4)
            self._ipv4_exhausted = True
        return self.draw_ipv6()

    def draw_ipv6(self) -> str:
        """Return a new random IPv6 address inside the IPv6 network."""
        host_bits = 128 - self._ipv6.prefixlen
        while True:
            words = self._rng.integers(0, 2**32, size=4, dtype=np.uint64)
            offset = 0
            for word in words:
                offset = (offset << 32) | int(word)
            offset &= (1 << host_bits) - 1
            if offset not in self._used_ipv6 and offset != 0:
                self._used_ipv6.add(offset)
                return str(self._ipv6.network_address + offset)

    def draw_proxy_burst(self, size: int) -> list[str]:
        """Return `size` new IPv4 addresses that share one /24, as a residential proxy pool rotates.

        Bursts fill the current proxy block and move to a fresh block when it has too few free
        addresses. Raises ValueError when `size` exceeds one /24 or no block is left.
        """
        capacity = IPV4_BLOCK_SIZE - len(RESERVED_HOSTS)
        if not 1 <= size <= capacity:
            raise ValueError(f"invalid proxy burst size {size}: expected 1 to {capacity} addresses (one /24)")
        block = self._current_proxy_block
        if block is None or len(self._free_hosts(block)) < size:
            block = self._claim_proxy_block()
        free = self._free_hosts(block)
        chosen = sorted(self._rng.choice(free, size=size, replace=False).tolist())
        self._used_ipv4.update(chosen)
        return [str(self._ipv4.network_address + offset) for offset in chosen]

    def _claim_proxy_block(self) -> int:
        """Reserve the next unused /24 for proxies; raise ValueError when none is left."""
        while self._next_proxy_block < self._block_count:
            block = int(self._proxy_block_order[self._next_proxy_block])
            self._next_proxy_block += 1
            if len(self._free_hosts(block)) == 0:
                continue
            self._proxy_blocks.add(block)
            self._current_proxy_block = block
            return block
        raise ValueError(
            f"no free /24 left in {self._ipv4} for click-fraud proxies; lower --scale or "
            "simulate.families.click_fraud.count"
        )

    def _free_hosts(self, block: int) -> np.ndarray:
        """Return the unused, non-reserved offsets of one /24 block."""
        base = block * IPV4_BLOCK_SIZE
        hosts = [base + host for host in range(IPV4_BLOCK_SIZE) if host not in RESERVED_HOSTS]
        return np.asarray([offset for offset in hosts if offset not in self._used_ipv4], dtype=np.int64)

    def _is_free_host(self, offset: int) -> bool:
        """Return whether an IPv4 offset may go to an ordinary client."""
        return (
            offset % IPV4_BLOCK_SIZE not in RESERVED_HOSTS
            and offset // IPV4_BLOCK_SIZE not in self._proxy_blocks
            and offset not in self._used_ipv4
        )


def _network(cfg: Settings, key: str, version: int) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """Parse the network under `key` and check its IP version."""
    value = str(cfg.raw(key))
    try:
        network = ipaddress.ip_network(value)
    except ValueError as exc:
        raise ValueError(f"invalid {cfg.where}.{key}={value!r}: {exc}") from exc
    if network.version != version:
        raise ValueError(f"invalid {cfg.where}.{key}={value!r}: expected an IPv{version} network")
    return network
