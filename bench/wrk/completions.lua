-- POST one new completion per request, rotating over the lines of the file given after `--`:
--   PATH<TAB>COOKIE<TAB>ASSIGNMENT_ID<TAB>DATE<TAB>TIME
-- client_id = "b" .. RUN .. "t" .. thread .. "n" .. counter: unique across threads and runs
-- (RUN is the second argument). done() prints one BENCH {json} line.
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
end

local rows = {}
local i = 0
local run = "0"

function init(args)
  run = args[2] or "0"
  for line in io.lines(args[1]) do
    local path, cookie, aid, date, time = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)$")
    local headers = {["Content-Type"] = "application/json"}
    if cookie ~= "" then headers["Cookie"] = cookie end
    table.insert(rows, {path = path, headers = headers, aid = aid, date = date, time = time})
  end
  i = (tid or 0) * 97
end

function request()
  i = i + 1
  local r = rows[(i % #rows) + 1]
  local body = string.format(
    '{"client_id":"b%st%dn%d","assignment_id":%s,"date":"%s","time":"%s","pain_before":%d,"pain_after":%d,"difficulty":"ok"}',
    run, tid, i, r.aid, r.date, r.time, i % 7, i % 5)
  return wrk.format("POST", r.path, r.headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"status_errors":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.status, e.connect, e.read, e.write, e.timeout))
end
