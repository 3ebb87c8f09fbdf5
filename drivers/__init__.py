"""Hardware drivers and simulated hardware. Imports nothing from edge_agent."""
