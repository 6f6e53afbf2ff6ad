"""The relay proper: one client WebSocket joined to one upstream Live API connection."""
