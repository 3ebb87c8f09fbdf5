"""The technicians' tools: commissioning on site, SD card provisioning, first-boot import."""
