"""The names of the commands a node runs (``Agent.command``; docs/fleet.md, "Commands").

A module of its own, with no imports, so the operator's ``fleet command`` parser can offer
them without loading the agent, paho or the cryptography of ``edge_agent.fleet``.
"""

NAMES = ("reload", "health", "flush", "report", "restart")
REVOKE = "revoke"  # with a key id: `fleet revoke-key`
UPDATE = "update"  # with a bundle's url, sha256 and size: `fleet push-update`, not `fleet command`
