"""Making goldens: a case's models through its flow (harness.stacks), each artifact kind written to
bytes and read back, the expected outputs per backend, in crash-safe processes or an isolated
environment of another torch release."""
