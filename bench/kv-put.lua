-- kv-put.lua - wrk script: PUT /v1/kv/bench:N with a 100-byte value, N drawn
-- at random from 1..BENCH_KEYS (environment, default 100000) per request.
-- Each wrk thread seeds its own generator, so threads write different keys.

local keys = tonumber(os.getenv("BENCH_KEYS") or "100000")
local value = string.rep("v", 100)
local headers = { ["Content-Type"] = "application/octet-stream" }
local counter = 0

function setup(thread)
   counter = counter + 1
   thread:set("id", counter)
end

function init(args)
   math.randomseed(os.time() * 1000 + (id or 0))
end

function request()
   return wrk.format("PUT", "/v1/kv/bench:" .. math.random(keys), headers, value)
end
