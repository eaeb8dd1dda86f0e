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
    assert "Caused by: java.lang.IllegalStateException: the broker went away" in said
    assert "\tat " not in said and "GatewayConnection" not in said


def test_the_first_error_is_reported_when_a_cleanup_error_and_log_lines_follow_it():
    output = ["py4j.protocol.Py4JJavaError: An error occurred while calling o9.await.\n",
              ": org.apache.flink.runtime.client.JobExecutionException: Job execution failed.\n",
              *["\tat org.apache.flink.Frame.run(Frame.java:1)\n"] * 30,
              "During handling of the above exception, another exception occurred:\n",
              "Traceback (most recent call last):\n", '  File "bench/segment_eval.py", line 130, in stop\n',
              "    self.job.wait(60)\n", "    ^^^^^^^^^^^^^^^^^\n",
              "subprocess.TimeoutExpired: Command '['python']' timed out after 60 seconds\n",
              *[f"2026-12-02 INFO shutting down {i}\n" for i in range(10)]]
    said = what_went_wrong(output)
    assert said.startswith("py4j.protocol.Py4JJavaError: An error occurred while calling o9.await.")
    assert "JobExecutionException: Job execution failed." in said and "TimeoutExpired" in said
    assert "shutting down 9" in said and "^^^" not in said and "Frame.run" not in said
