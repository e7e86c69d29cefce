-- kv-patch.lua - wrk script: PATCH /v1/kv/patch:N with a JSON merge patch
-- setting one member, {"fM": R}, N drawn at random from 1..BENCH_KEYS
-- (environment, default 1000) and M from 1..16 per request, so that the
-- patches of one key touch different members. Each wrk thread seeds its own
-- generator.

local keys = tonumber(os.getenv("BENCH_KEYS") or "1000")
local headers = { ["Content-Type"] = "application/merge-patch+json" }
local counter = 0

function setup(thread)
   counter = counter + 1
   thread:set("id", counter)
end

function init(args)
   math.randomseed(os.time() * 1000 + (id or 0))
end

function request()
   local body = string.format('{"f%d": %d}', math.random(16), math.random(1000000))
   return wrk.format("PATCH", "/v1/kv/patch:" .. math.random(keys), headers, body)
end
