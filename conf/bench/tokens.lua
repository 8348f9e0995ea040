-- conf/bench/tokens.lua -- wrk script of `make bench`.
--
--   wrk -t1 ... -s conf/bench/tokens.lua URL -- TOKENFILE
--
-- Sends GET URL with "Authorization: Bearer <token>", the tokens taken in
-- turn from TOKENFILE (one a line).  A file of one token repeats it (the
-- cached case, and the plain baseline, which carries the same header).
-- With several threads each takes its own stride of the file.  When done
-- it prints one line for conf/bench/run:
--
--   tokens: file=<n> sent=<requests> wrapped=<yes|no>
--
-- wrapped=yes means some token was sent twice, so a "unique" run was not.

local threads = {}
local nthreads = 0

function setup(thread)
    thread:set("tid", nthreads)
    nthreads = nthreads + 1
    table.insert(threads, thread)
end

function init(args)
    local path = args[1]
    if path == nil then
        error("tokens.lua: pass the token file after --")
    end
    reqs = {}
    local f = assert(io.open(path, "r"))
    for line in f:lines() do
        if #line > 0 then
            table.insert(reqs, wrk.format("GET", nil,
                {["Authorization"] = "Bearer " .. line}))
        end
    end
    f:close()
    if #reqs == 0 then
        error("tokens.lua: no tokens in " .. path)
    end
    ntokens = #reqs
    step = tonumber(args[2] or "1")   -- the number of threads (wrk -t)
    idx = tid + 1
    sent = 0
    wrapped = 0
end

function request()
    local r = reqs[idx]
    idx = idx + step
    if idx > ntokens then
        idx = ((idx - 1) % ntokens) + 1
        wrapped = 1
    end
    sent = sent + 1
    return r
end

function done(summary, latency, requests)
    local n, w, total = 0, "no", 0
    for _, t in ipairs(threads) do
        n = t:get("ntokens") or n
        total = total + (t:get("sent") or 0)
        if t:get("wrapped") == 1 then
            w = "yes"
        end
    end
    io.write(string.format("tokens: file=%d sent=%d wrapped=%s\n",
                           n, total, w))
end
