"""Register-level simulators of the supported chips, usable by the agent and tests."""
