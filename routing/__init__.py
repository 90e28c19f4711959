"""RelayCore: routing policies, circuit breakers and queues, as pure logic with injected clock, randomness and transport."""
