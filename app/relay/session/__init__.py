"""One live session (two pumps), the sessions live in this process, and the SIGTERM drain."""
