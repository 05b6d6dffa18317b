-- One wrk script for every workload, steered by environment variables:
--   BENCH_MODE      submit | poll | mixed
--   BENCH_KEY       bearer key sent on every request
--   BENCH_BODY      JSON body of a submission
--   BENCH_IDS       file with one existing task id per line (poll and mixed), optionally
--                   followed by a space and the path of its first result picture
--   BENCH_DOWNLOAD  path template of a result image, "{id}" and "{result}" (that path)
--                   replaced (mixed; empty: none)
--   BENCH_DL_IDS    how many of the ids have a result to download (mixed)
--   BENCH_OUT       file the summary is written to, as JSON
-- The mixed workload sends, of every 10 requests, 1 submission, 1 download and 8 polls.
-- Every answer that is not 2xx is counted by its status code (wrk itself counts only those
-- of 400 and above, without saying which): a rate made of error answers is no result.

local mode = os.getenv("BENCH_MODE") or "poll"
local key = os.getenv("BENCH_KEY") or "sk-bench"
local body = os.getenv("BENCH_BODY") or "{}"
local download = os.getenv("BENCH_DOWNLOAD") or ""
local dl_count = tonumber(os.getenv("BENCH_DL_IDS") or "0")
local out = os.getenv("BENCH_OUT") or "wrk-summary.json"

local ids = {}
local results = {}
local ids_file = os.getenv("BENCH_IDS")
if ids_file and ids_file ~= "" then
  for line in io.lines(ids_file) do
    local id, result = line:match("^(%S+)%s*(%S*)$")
    if id then
      ids[#ids + 1] = id
      results[#results + 1] = result
    end
  end
end

local auth = "Bearer " .. key
local json_headers = { ["Authorization"] = auth, ["Content-Type"] = "application/json" }
local get_headers = { ["Authorization"] = auth }

if mode == "submit" then
  wrk.method = "POST"
  wrk.path = "/v1/images/tasks"
  wrk.body = body
  wrk.headers["Authorization"] = auth
  wrk.headers["Content-Type"] = "application/json"
elseif mode == "poll" then
  wrk.method = "GET"
  wrk.path = "/v1/images/tasks/" .. ids[1]
  wrk.headers["Authorization"] = auth
end

local counter = 0
local threads = {}
-- Per thread (a global, so that done() can read it with thread:get): status code -> count.
bench_statuses = {}

function setup(thread)
  -- Spread the threads over the id list.
  counter = counter + 1
  thread:set("offset", counter * 7)
  threads[#threads + 1] = thread
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    bench_statuses[status] = (bench_statuses[status] or 0) + 1
  end
end

function init(args)
  counter = offset or 0
end

if mode == "mixed" then
  request = function()
    counter = counter + 1
    local slot = counter % 10
    if slot == 0 then
      return wrk.format("POST", "/v1/images/tasks", json_headers, body)
    end
    if slot == 5 and download ~= "" and dl_count > 0 then
      local i = (counter % dl_count) + 1
      local path = download:gsub("{id}", ids[i]):gsub("{result}", results[i])
      return wrk.format("GET", path, get_headers)
    end
    local id = ids[(counter % #ids) + 1]
    return wrk.format("GET", "/v1/images/tasks/" .. id, get_headers)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local statuses = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("bench_statuses") or {}) do
      statuses[status] = (statuses[status] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(statuses) do
    parts[#parts + 1] = string.format('"%d": %d', status, count)
  end
  local f = io.open(out, "w")
  f:write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "max_us": %d, "mean_us": %.1f, "errors_connect": %d, "errors_read": %d, ' ..
    '"errors_write": %d, "errors_status": %d, "errors_timeout": %d, "statuses": {%s}}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean, e.connect, e.read, e.write, e.status, e.timeout, table.concat(parts, ", ")))
  f:close()
end
