-- Rotate over prepared GET requests, one per line of the file given after `--`:
--   PATH<TAB>COOKIE          (COOKIE may be empty)
-- Each wrk thread starts at a different line. done() prints one BENCH {json} line.
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local reqs = {}
local i = 0

function init(args)
  for line in io.lines(args[1]) do
    local path, cookie = line:match("^([^\t]*)\t?(.*)$")
    local headers = {}
    if cookie ~= nil and cookie ~= "" then headers["Cookie"] = cookie end
    table.insert(reqs, wrk.format("GET", path, headers))
  end
  i = (tid or 0) * 97
end

function request()
  i = i + 1
  return reqs[(i % #reqs) + 1]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"status_errors":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.status, e.connect, e.read, e.write, e.timeout))
end
