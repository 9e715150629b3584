"""The trainer: data, the LoRA loop (plain or in Ray Train workers), evaluation. No gRPC, no Kafka."""
