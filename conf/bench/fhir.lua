-- conf/bench/fhir.lua -- wrk script of `make bench`'s WAF cases.
--
--   wrk -t1 ... -s conf/bench/fhir.lua URL -- METHOD TOKENFILE [BODYFILE]
--
-- Sends the same request on every call, as a FHIR app sends it: METHOD
-- URL with a bearer token (the first line of TOKENFILE), Accept and
-- User-Agent of a phone app, a host name (not the numeric address CRS
-- scores with 920350: a deployed gateway has a name), and with BODYFILE
-- its bytes as an application/fhir+json body.  When done it prints one
-- line for conf/bench/run:
--
--   tokens: file=1 sent=<requests> wrapped=no

local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    local method, tokfile, bodyfile = args[1], args[2], args[3]
    if method == nil or tokfile == nil then
        error("fhir.lua: pass METHOD TOKENFILE [BODYFILE] after --")
    end
    local f = assert(io.open(tokfile, "r"))
    local token = f:read("*l")
    f:close()
    if token == nil or #token == 0 then
        error("fhir.lua: no token in " .. tokfile)
    end
    local headers = {
        ["Host"] = "fhir.bench.example",
        ["Accept"] = "application/fhir+json",
        ["User-Agent"] = "WelbyPHR/3.4.1 (iPhone; iOS 18.1; Scale/3.00)",
        ["Authorization"] = "Bearer " .. token,
    }
    local body = nil
    if bodyfile ~= nil then
        f = assert(io.open(bodyfile, "rb"))
        body = f:read("*a")
        f:close()
        headers["Content-Type"] = "application/fhir+json"
    end
    req = wrk.format(method, nil, headers, body)
    sent = 0
end

function request()
    sent = sent + 1
    return req
end

function done(summary, latency, requests)
    local total = 0
    for _, t in ipairs(threads) do
        total = total + (t:get("sent") or 0)
    end
    io.write(string.format("tokens: file=1 sent=%d wrapped=no\n", total))
end
