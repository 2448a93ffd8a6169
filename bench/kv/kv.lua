-- kv.lua — the one wrk script for both sides of the K/V benchmark.
--
--   wrk -t T -c C -d D --latency -s kv.lua URL -- API OP KEYS T C [DIR]
--
--   API   consul | etcd
--         consul: PUT /v1/kv/bench/<n> (raw 64-byte body, expects "true"),
--                 GET /v1/kv/bench/<n> (expects a JSON array)
--         etcd:   POST /v3/kv/put   {"key":b64,"value":b64}      (etcd 3.4 gRPC gateway)
--                 POST /v3/kv/range {"key":b64[,"serializable":true]} (expects "kvs")
--   OP    put    random keys among KEYS
--         get    random keys, default consistency (Consul: leader confirms
--                leadership; etcd: linearizable range)
--         stale  random keys, ?stale / serializable:true
--         load   every key 0..KEYS-1 once (spread over the threads), then the
--                thread stops; run with a generous -d as an upper bound
--   KEYS  number of keys (bench/0 .. bench/KEYS-1)
--   T, C  the -t and -c given to wrk (threads, connections)
--   DIR   (load only, optional) each thread creates DIR/done.<id> when it
--         has written its keys, so the caller can stop wrk early (SIGINT)
--
-- Every response is checked: a non-2xx status counts in non2xx, a 2xx whose
-- body is not the expected one counts in bad. done() prints one RESULT line
-- that bench/kv/run.sh parses; a run with non2xx, bad or socket errors is not
-- a valid measurement.

local threads = {}
local nextid = 0

function setup(thread)
   thread:set("id", nextid)
   nextid = nextid + 1
   table.insert(threads, thread)
end

-- base64 (LuaJIT has no built-in one)
local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function b64(s)
   local out = {}
   local n = #s
   for i = 1, n, 3 do
      local a, b, c = s:byte(i, i + 2)
      local v = a * 65536 + (b or 0) * 256 + (c or 0)
      local c1 = math.floor(v / 262144) % 64
      local c2 = math.floor(v / 4096) % 64
      local c3 = math.floor(v / 64) % 64
      local c4 = v % 64
      out[#out + 1] = b64chars:sub(c1 + 1, c1 + 1) .. b64chars:sub(c2 + 1, c2 + 1) ..
         (b and b64chars:sub(c3 + 1, c3 + 1) or "=") .. (c and b64chars:sub(c4 + 1, c4 + 1) or "=")
   end
   return table.concat(out)
end

-- 64-byte value, the same bytes for both systems
local value = string.rep("0123456789abcdef", 4)
local value64 = b64(value)

local api, op, nkeys, nthreads, nconns
local build, okbody
local reqs = {}
local quota, margin = 0, 0
local sent = 0

local function key(n) return "bench/" .. n end

local builders = {
   consul = {
      put = function(n) return wrk.format("PUT", "/v1/kv/" .. key(n), nil, value) end,
      get = function(n) return wrk.format("GET", "/v1/kv/" .. key(n)) end,
      stale = function(n) return wrk.format("GET", "/v1/kv/" .. key(n) .. "?stale") end,
   },
   etcd = {
      put = function(n)
         return wrk.format("POST", "/v3/kv/put", { ["Content-Type"] = "application/json" },
            '{"key":"' .. b64(key(n)) .. '","value":"' .. value64 .. '"}')
      end,
      get = function(n)
         return wrk.format("POST", "/v3/kv/range", { ["Content-Type"] = "application/json" },
            '{"key":"' .. b64(key(n)) .. '"}')
      end,
      stale = function(n)
         return wrk.format("POST", "/v3/kv/range", { ["Content-Type"] = "application/json" },
            '{"key":"' .. b64(key(n)) .. '","serializable":true}')
      end,
   },
}

local checks = {
   consul = {
      put = function(b) return b ~= nil and b:find("true", 1, true) == 1 end,
      get = function(b) return b ~= nil and b:sub(1, 1) == "[" and b:find('"Key"', 1, true) ~= nil end,
   },
   etcd = {
      put = function(b) return b ~= nil and b:find('"header"', 1, true) ~= nil and b:find('"error"', 1, true) == nil end,
      get = function(b) return b ~= nil and b:find('"kvs"', 1, true) ~= nil end,
   },
}

function init(args)
   api = args[1] or "consul"
   op = args[2] or "put"
   nkeys = tonumber(args[3] or "10000")
   nthreads = tonumber(args[4] or "1")
   nconns = tonumber(args[5] or "1")
   donedir = args[6]
   assert(builders[api], "API must be consul or etcd")
   local bop = (op == "load") and "put" or op
   build = builders[api][bop]
   assert(build, "OP must be put, get, stale or load")
   okbody = checks[api][(bop == "put") and "put" or "get"]
   non2xx, bad, responses = 0, 0, 0
   math.randomseed(os.time() * 1000 + id * 7919)
   if op == "load" then
      -- this thread writes keys id, id+T, id+2T, ... < KEYS
      quota = (id < nkeys) and (math.floor((nkeys - 1 - id) / nthreads) + 1) or 0
      -- requests still in flight when the quota's last answer arrives are
      -- repeats of this thread's first key; stop once each connection has
      -- had one more answer
      margin = math.ceil(nconns / nthreads)
   else
      for n = 0, nkeys - 1 do reqs[n] = build(n) end
   end
end

function request()
   if op == "load" then
      local n = id + sent * nthreads
      sent = sent + 1
      if n >= nkeys then n = id end
      return build(n)
   end
   return reqs[math.random(0, nkeys - 1)]
end

function response(status, headers, body)
   responses = responses + 1
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
   elseif not okbody(body) then
      bad = bad + 1
   end
   if op == "load" and responses >= quota + margin and not finished then
      finished = true
      -- wrk itself runs for the whole -d: tell run.sh this thread is done
      -- so it can end wrk early with SIGINT
      if donedir then
         local f = io.open(donedir .. "/done." .. id, "w")
         if f then f:close() end
      end
      wrk.thread:stop()
   end
end

function done(summary, latency, requests)
   local n2, bd, resp = 0, 0, 0
   for _, t in ipairs(threads) do
      n2 = n2 + (t:get("non2xx") or 0)
      bd = bd + (t:get("bad") or 0)
      resp = resp + (t:get("responses") or 0)
   end
   local e = summary.errors
   local secs = summary.duration / 1e6
   io.write(string.format(
      "RESULT requests=%d duration_s=%.3f rps=%.1f mean_ms=%.3f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f " ..
      "non2xx=%d bad=%d responses=%d sock_connect=%d sock_read=%d sock_write=%d sock_timeout=%d status_gt399=%d\n",
      summary.requests, secs, summary.requests / secs, latency.mean / 1000,
      latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
      n2, bd, resp, e.connect, e.read, e.write, e.timeout, e.status))
end
