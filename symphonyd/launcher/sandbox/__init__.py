"""Kernel-enforced agent sandbox: network namespace, veth, nftables, DNS, egress proxy."""
