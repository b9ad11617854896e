-- Appended to every wrk script of the benchmark: one machine-readable line at the end of a run,
-- parsed by tests/bench/load.py (latencies in microseconds).
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH-RESULT requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d status=%d " ..
    "timeout=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max))
end
