"""The typed failure of every sandbox step; ``code`` names the step that failed."""

from __future__ import annotations

from symphonyd.core.errors import SymphonyError

NETNS_FAILED = "sandbox_netns_failed"
VETH_FAILED = "sandbox_veth_failed"
ADDRESS_FAILED = "sandbox_address_pool_exhausted"
NFT_FAILED = "sandbox_nft_failed"
DNS_FAILED = "sandbox_dns_failed"
PROXY_FAILED = "sandbox_proxy_failed"
SPAWN_FAILED = "sandbox_spawn_failed"
FS_FAILED = "sandbox_fs_failed"
RESOURCES_FAILED = "sandbox_resources_failed"


class SandboxError(SymphonyError):
    """A sandbox step failed; the agent must not start."""

    code = "sandbox_failed"
