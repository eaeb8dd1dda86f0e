"""Tracktor: a real-time customer-analytics pipeline on Kafka, PyFlink and ClickHouse."""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
JARS_DIR = ROOT / ".cache" / "jars"  # what `bin/tracktor setup` fetches and builds (docker/jars)
