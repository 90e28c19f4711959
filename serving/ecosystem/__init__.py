"""The ecosystem and its live feed: component states, snapshots, server-sent events and the
WebSocket, the event hub, the dashboard, analytics, and push ingestion."""
