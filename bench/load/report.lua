-- wrk script: print one machine-readable line when the run is done.
--   RESULT rps=<req/s> p50_us=<int> p99_us=<int> requests=<n> errors=<socket errors> non2xx=<n> mb_s=<MB/s>
-- wrk counts non-2xx/3xx answers in summary.errors.status.
done = function(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "RESULT rps=%.1f p50_us=%d p99_us=%d requests=%d errors=%d non2xx=%d mb_s=%.1f\n",
    summary.requests / secs,
    latency:percentile(50), latency:percentile(99),
    summary.requests,
    e.connect + e.read + e.write + e.timeout, e.status,
    summary.bytes / secs / 1e6))
end
