"""The agent as it runs on a node: hardware, sampler, store, uplink, health, systemd."""
