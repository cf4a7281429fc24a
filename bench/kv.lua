-- wrk script for `make bench`: PUTs of fixed-size values or linearizable GETs on
-- random keys of a fixed key space, against raftkv or etcd's v3 JSON gateway.
--
--   wrk -s bench/kv.lua URL -- SYSTEM OP KEYS VALUE_BYTES [GATEWAY [TOKEN]]
--   SYSTEM: raftkv | etcd     OP: put | get
--   raftkv: PUT /v1/kv/<key> (raw body) | GET /v1/kv/<key> (linearizable by default)
--   etcd:   POST <GATEWAY>/kv/put {"key","value" base64} | POST <GATEWAY>/kv/range {"key"}
--           (range is linearizable unless "serializable": true); GATEWAY defaults to /v3
--   TOKEN: sent as `Authorization: Bearer TOKEN` (raftkv) or `Authorization: TOKEN` (etcd's
--          auth token); none when absent or empty
--
-- Every request is built once in init(); request() only picks one at random, so
-- the Lua side costs the same for both systems.

local requests = {}
local count = 0

local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(data)
  return ((data:gsub(".", function(char)
    local bits, byte = "", char:byte()
    for i = 8, 1, -1 do
      bits = bits .. (byte % 2 ^ i - byte % 2 ^ (i - 1) > 0 and "1" or "0")
    end
    return bits
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(bits)
    if #bits < 6 then return "" end
    local n = 0
    for i = 1, 6 do
      n = n + (bits:sub(i, i) == "1" and 2 ^ (6 - i) or 0)
    end
    return alphabet:sub(n + 1, n + 1)
  end) .. ({ "", "==", "=" })[#data % 3 + 1])
end

function init(args)
  local system = args[1] or "raftkv"
  local op = args[2] or "put"
  local keys = tonumber(args[3] or "1000")
  local value_bytes = tonumber(args[4] or "256")
  local gateway = args[5] or "/v3"
  local token = args[6] or ""
  math.randomseed(os.time() + (tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000))
  local chars = {}
  for i = 1, value_bytes do
    chars[i] = string.char(97 + (i * 7) % 26)
  end
  local value = table.concat(chars)
  for i = 1, keys do
    local key = string.format("bench/%06d", i - 1)
    local auth = {}
    if token ~= "" then
      auth["Authorization"] = (system == "raftkv" and "Bearer " or "") .. token
    end
    if system == "raftkv" then
      if op == "put" then
        auth["Content-Type"] = "application/octet-stream"
        requests[i] = wrk.format("PUT", "/v1/kv/" .. key, auth, value)
      else
        requests[i] = wrk.format("GET", "/v1/kv/" .. key, auth)
      end
    else
      local body
      if op == "put" then
        body = '{"key":"' .. base64(key) .. '","value":"' .. base64(value) .. '"}'
      else
        body = '{"key":"' .. base64(key) .. '"}'
      end
      auth["Content-Type"] = "application/json"
      requests[i] = wrk.format("POST", gateway .. (op == "put" and "/kv/put" or "/kv/range"),
        auth, body)
    end
  end
  count = keys
end

function request()
  return requests[math.random(1, count)]
end
