"""The power-cut harness: a FUSE filesystem that loses what was not made durable (fs.py),
and a launcher of the agent that counts the samples its drivers produce (probe.py)."""
