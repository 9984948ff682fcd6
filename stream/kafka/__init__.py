"""Kafka at the edge: transport, admin, the embedded broker, and the patches of Faust or aiokafka."""
