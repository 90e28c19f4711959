"""RelayCore's HTTP side: the pooled transport, durable async delivery, tuning and the API router."""
