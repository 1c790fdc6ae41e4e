-- wrk script: every request PUTs the same body to the next pre-made URL (a fresh slot and
-- token per upload). URLs come from <prefix>.<thread id>, one request target per line.
-- Usage: wrk -s put_urls.lua ... -- <prefix> <body bytes>
--        wrk -s put_urls.lua ... -- <prefix> <body file> <content type>
local threads, counter = {}, 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local urls, i, body = {}, 0, nil
bad = 0

function init(args)
  for line in io.lines(args[1] .. "." .. id) do urls[#urls + 1] = line end
  if tonumber(args[2]) then
    body = string.rep("x", tonumber(args[2]))
  else -- a file's bytes (e.g. a real JPEG), sent as args[3]
    local f = assert(io.open(args[2], "rb"))
    body = f:read("*a")
    f:close()
  end
  wrk.headers["Content-Type"] = args[3] or "application/octet-stream"
end

function request()
  i = i + 1
  return wrk.format("PUT", urls[((i - 1) % #urls) + 1], nil, body)
end

function response(status, headers, b)
  if status < 200 or status > 299 then bad = bad + 1 end
end

function done(summary, latency, requests)
  local nbad = 0
  for _, t in ipairs(threads) do nbad = nbad + t:get("bad") end
  local e = summary.errors
  io.write(string.format('{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"non2xx":%d,"errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), nbad,
    e.connect + e.read + e.write + e.timeout))
end
