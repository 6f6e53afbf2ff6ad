"""What the relay serves to browsers: the client kit (`/client/live-relay.js`) and a demo page."""
