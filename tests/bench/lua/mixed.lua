-- A mixed workload: each request is drawn at random from a plan file, one kind per line:
--   weight <TAB> method <TAB> path <TAB> Authorization value <TAB> body ("-" for none)
-- Arguments: the plan file, a seed. Each thread draws its own sequence (seed + thread number).
local plan = {}
local total = 0
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("number", threads)
end

function init(args)
  local file = assert(io.open(args[1], "r"))
  for line in file:lines() do
    local weight, method, path, auth, body =
      line:match("^(%d+)\t(%u+)\t([^\t]+)\t([^\t]+)\t(.*)$")
    assert(weight, "bad plan line: " .. line)
    local headers = { Authorization = auth }
    if body == "-" then
      body = nil
    else
      headers["Content-Type"] = "application/json"
    end
    total = total + tonumber(weight)
    table.insert(plan, { upto = total, request = wrk.format(method, path, headers, body) })
  end
  file:close()
  math.randomseed(tonumber(args[2]) + (number or 0))
end

function request()
  local draw = math.random(total)
  for _, kind in ipairs(plan) do
    if draw <= kind.upto then
      return kind.request
    end
  end
  return plan[#plan].request
end
