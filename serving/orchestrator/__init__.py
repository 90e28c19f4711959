"""The AI Orchestrator in the API: its endpoints under /api/v2/ai and its in-process executors."""
