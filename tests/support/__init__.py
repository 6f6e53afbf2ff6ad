"""Shared test machinery: real processes, real sockets, free ports."""
