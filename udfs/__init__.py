"""The decisions of Tracktor's jobs as plain Python: no pyflink imports here."""
