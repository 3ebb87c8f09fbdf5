"""The exit codes of every command: 0 success; 1 a runtime failure (broker unreachable
for tail, bad payload for decode, a sensor that does not answer); 2 bad usage or an
invalid configuration."""

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
