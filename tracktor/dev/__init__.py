"""Tools for running Tracktor on one machine: the embedded Kafka broker (kafka_local.py,
stack.py), sample data (sample_data.py, envelopes.py, loader.py) and the demo."""
