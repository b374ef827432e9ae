-- wrk: single-event POST /events with a bearer token from $TOKEN; prints
-- how many answers were not 202 (wrk itself counts only 5xx as errors).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
wrk.body = '{"event_type":"page_view","user_id":"bench-user","payload":{"path":"/pricing"}}'

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

others = 0
function response(status, headers, body)
  if status ~= 202 then others = others + 1 end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + thread:get("others") end
  io.write(string.format("non-202 answers: %d\n", total))
end
