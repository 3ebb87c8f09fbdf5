"""The exit codes of every command: 0 success; 1 a runtime failure (broker unreachable
for tail, bad payload for decode, a sensor that does not answer); 2 bad usage or an
invalid configuration; 141 the reader of the output went away (128 + SIGPIPE, as a shell
reports a tool that a pipe's reader left)."""

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
EXIT_PIPE = 141
