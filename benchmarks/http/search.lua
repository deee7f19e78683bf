-- wrk script: POST /v1/search cycling through real queries, one JSON body per line of a file.
--   wrk -t2 -c8 -d10s --latency -s benchmarks/http/search.lua http://127.0.0.1:8000 -- BODIES.jsonl
-- Each wrk thread starts at its own offset in the file, so threads do not send the same query at
-- once. done() prints one JSON line (prefixed "WRK_JSON ") for benchmarks/http_bench.py to read.
local bodies = {}
local i = 0
local headers = { ["Content-Type"] = "application/json" }
local key = os.getenv("LSR_API_KEY")
if key and key ~= "" then headers["X-API-Key"] = key end

local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local path = args[1] or error("give the bodies file: wrk ... -s search.lua URL -- BODIES.jsonl")
  for line in io.lines(path) do
    if #line > 0 then bodies[#bodies + 1] = line end
  end
  if #bodies == 0 then error("no request body in " .. path) end
  i = (id or 0) * 97 % #bodies
  non2xx = 0
end

function request()
  i = i % #bodies + 1
  return wrk.format("POST", "/v1/search", headers, bodies[i])
end

function response(status, headers, body)
  if status ~= 200 then non2xx = non2xx + 1 end
end

function done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do bad = bad + (t:get("non2xx") or 0) end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"seconds":%.3f,"qps":%.1f,"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,' ..
    '"mean_ms":%.3f,"max_ms":%.3f,"non_200":%d,"socket_errors":%d}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3,
    latency.mean / 1e3, latency.max / 1e3, bad,
    e.connect + e.read + e.write + e.timeout))
end
