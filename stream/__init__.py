"""streamrank: a streaming real-time recommendation reranker on Kafka and Faust."""

__version__ = "0.1.0"
