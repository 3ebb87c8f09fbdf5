"""Fleet management: operator keys, signed objects, update bundles (docs/fleet.md).

``keys`` Ed25519 key files and the node's trust store; ``canonical`` the one byte string of a
value, and a bounded parse; ``signed`` the envelope of every signed object (update manifests,
configurations, commands) and its verification; ``counters`` the node's durable record of the
last accepted counter per kind; ``bundle`` building an update bundle (the operator's side);
``staging`` verifying one into a staging folder (the node's side); ``fetch`` fetching one over
HTTPS, resumable, and ``updates`` the ``update`` command that fetches and installs it;
``refusal`` the reasons;
``release`` the A/B layout of releases (standard library only); ``install`` ``update apply``;
``launcher`` the service's main process, which runs a release's agent, its trial and the
rollback (standard library and ``release`` only). Nothing here is imported by ``edge-agent
run``: PyNaCl is loaded only where a command uses it.
"""
