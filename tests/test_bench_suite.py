"""bin/tracktor bench's report of a benchmark that failed (bench/suite.py)."""
from bench.suite import what_went_wrong


def test_a_failed_benchmark_is_reported_by_its_error_not_by_java_stack_frames():
    output = ["segments-10: 20,000 events\n", "Traceback (most recent call last):\n",
              '  File "bench/persons.py", line 117, in bounded_rate\n',
              "py4j.protocol.Py4JJavaError: An error occurred while calling o412.await.\n",
              ": java.util.concurrent.ExecutionException: org.apache.flink.table.api.TableException: Failed\n",
              "\tat java.base/java.util.concurrent.CompletableFuture.reportGet(CompletableFuture.java:396)\n",
              "Caused by: java.lang.IllegalStateException: the broker went away\n",
              *["\tat org.apache.flink.api.python.shaded.py4j.GatewayConnection.run(GatewayConnection.java:238)\n"] * 40,
              "\t... 12 more\n"]
    said = what_went_wrong(output)
    assert "Py4JJavaError: An error occurred while calling o412.await." in said
    assert said.endswith("Caused by: java.lang.IllegalStateException: the broker went away")
    assert "\tat " not in said and "GatewayConnection" not in said
