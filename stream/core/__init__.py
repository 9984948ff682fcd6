"""Pure ranking and state math: no Faust, no Kafka."""
