"""Running Tracktor's Flink jobs: environment.py (jars, interpreter, checkpoints),
kafka.py (sources and the exactly-once sink), bundling.py (records to Python in bundles),
runner.py (the Job declaration and the one runner that attaches Kafka to a job's build)."""
