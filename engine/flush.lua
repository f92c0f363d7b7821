-- flush.lua: one unit of a flush, applied atomically (docs/redis-schema.md).
--
-- A unit owns the keys of one view. In one script it checks its fences,
-- drops the panes that left each window, adds the new pane deltas, rewrites
-- the window hashes it touched (counts and derived fields together), and
-- advances its fences. Either all of that happens or none of it.
--
-- ARGV: 1 prefix, 2 group, 3 topic, 4 unit, 5 view, 6 the view's dimensions
-- (comma-separated), 7 now (epoch ms), 8 flush id, 9 windows
-- "name:size_ms:pane_ms;..." (total has 0:0), 10 fences
-- "partition:begin:end;..." (begin -1: no fence yet), then pairs
-- (segment, entries). entries is binary: per (window, pane) one record
-- "<Bi8" window index (0-based), pane index, then 12 little-endian int64:
-- h0..h10 and sent.
--
-- Returns {"ok", segments, expired panes}, {"applied"} when every fence
-- already equals its end (a retry of a unit whose reply was lost), or
-- {"mismatch", "partition:stored;..."} when a fence is neither: someone
-- else has applied part of this range, so nothing is written.

local prefix, group, topic, unit, view, dims = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local now = tonumber(ARGV[7])
local flush_id = ARGV[8]
local NF = 12 -- h0..h10, sent
local ENTRY = '<Bi8' .. string.rep('i8', NF)
local PANE = '<' .. string.rep('i8', NF)
local CHUNK = 4000 -- keeps unpack() under Lua's C stack limit

-- Run `cmd key` over a long flat argument list in chunks; HMGET replies
-- are concatenated in order.
local function chunked(cmd, key, list, stride)
    local out = {}
    local step = CHUNK - (CHUNK % stride)
    for first = 1, #list, step do
        local last = math.min(first + step - 1, #list)
        local reply = redis.call(cmd, key, unpack(list, first, last))
        if type(reply) == 'table' then
            for _, v in ipairs(reply) do
                out[#out + 1] = v
            end
        end
    end
    return out
end

local windows = {}
for name, size, pane in string.gmatch(ARGV[9], '([^:;]+):(%d+):(%d+)') do
    windows[#windows + 1] = {name = name, size = tonumber(size), pane = tonumber(pane)}
end

-- 1. Fences: every partition of the flush must stand where it began.
local okey = prefix .. ':offsets:' .. group .. ':' .. topic
local parts, fence_fields = {}, {}
for p, b, e in string.gmatch(ARGV[10], '(%d+):(%-?%d+):(%-?%d+)') do
    parts[#parts + 1] = {p = p, b = tonumber(b), e = tonumber(e)}
    fence_fields[#fence_fields + 1] = unit .. ':' .. p
end
if #parts > 0 then
    local stored = chunked('HMGET', okey, fence_fields, 1)
    local at_begin, at_end, seen = true, true, {}
    for i, part in ipairs(parts) do
        local s = stored[i] and tonumber(stored[i]) or -1
        if s ~= part.b then at_begin = false end
        if s ~= part.e then at_end = false end
        seen[#seen + 1] = part.p .. ':' .. s
    end
    if not at_begin then
        if at_end then return {'applied'} end
        return {'mismatch', table.concat(seen, ';')}
    end
end

-- Deltas per (segment, window), in first-touched order.
local acc, order = {}, {}
local function add(seg, wi, counts, sign)
    local key = seg .. '\0' .. wi
    local a = acc[key]
    if not a then
        a = {}
        for f = 1, NF do a[f] = 0 end
        acc[key] = a
        order[#order + 1] = {seg, wi, key}
    end
    for f = 1, NF do a[f] = a[f] + sign * counts[f] end
end

local function pane_key(w, idx)
    return prefix .. ':pane:' .. unit .. ':' .. w.name .. ':' .. string.format('%d', idx)
end

-- 2. Expiry: panes below each window's low pane leave it, even when no
-- event arrives. The low pane never moves back (another instance's clock
-- may be ahead of ours).
local lowkey = prefix .. ':low:' .. unit
local low, expired = {}, 0
local finite = {}
for i, w in ipairs(windows) do
    if w.size > 0 then finite[#finite + 1] = i end
end
if #finite > 0 then
    local names = {}
    for k, wi in ipairs(finite) do names[k] = windows[wi].name end
    local stored = redis.call('HMGET', lowkey, unpack(names))
    local moved = {}
    for k, wi in ipairs(finite) do
        local w = windows[wi]
        local l = math.floor(now / w.pane) - 59
        local old = stored[k] and tonumber(stored[k])
        if old and old >= l then
            l = old
        else
            local zkey = prefix .. ':panes:' .. unit .. ':' .. w.name
            local gone = redis.call('ZRANGEBYSCORE', zkey, '-inf', '(' .. string.format('%d', l))
            for _, idx in ipairs(gone) do
                local pkey = pane_key(w, tonumber(idx))
                local kv = redis.call('HGETALL', pkey)
                for j = 1, #kv, 2 do
                    add(kv[j], wi, {struct.unpack(PANE, kv[j + 1])}, -1)
                end
                redis.call('DEL', pkey)
                expired = expired + 1
            end
            if #gone > 0 then
                redis.call('ZREMRANGEBYSCORE', zkey, '-inf', '(' .. string.format('%d', l))
            end
            moved[#moved + 1] = w.name
            moved[#moved + 1] = string.format('%d', l)
        end
        low[wi] = l
    end
    if #moved > 0 then redis.call('HSET', lowkey, unpack(moved)) end
end

-- 3. The new deltas: into their panes (kept for expiry) and the totals.
local segments = {}
local panes = {} -- panes[wi][idx] = {segs = {...}, vals = {...}}
for i = 11, #ARGV - 1, 2 do
    local seg, data = ARGV[i], ARGV[i + 1]
    segments[#segments + 1] = seg
    local pos = 1
    while pos <= #data do
        local t = {struct.unpack(ENTRY, data, pos)}
        local wi, idx = t[1] + 1, t[2]
        pos = t[NF + 3]
        local counts = {}
        for f = 1, NF do counts[f] = t[f + 2] end
        local w = windows[wi]
        if w.size == 0 then
            add(seg, wi, counts, 1)
        elseif idx >= low[wi] then
            add(seg, wi, counts, 1)
            panes[wi] = panes[wi] or {}
            local p = panes[wi][idx]
            if not p then
                p = {segs = {}, vals = {}}
                panes[wi][idx] = p
            end
            p.segs[#p.segs + 1] = seg
            p.vals[#p.vals + 1] = counts
        end
        -- else the pane already left this window: the event counts in the
        -- larger windows and `total` only.
    end
end

for wi, byidx in pairs(panes) do
    local w = windows[wi]
    local zadd = {}
    for idx, p in pairs(byidx) do
        local pkey = pane_key(w, idx)
        local old = chunked('HMGET', pkey, p.segs, 1)
        local args = {}
        for k, seg in ipairs(p.segs) do
            local v = p.vals[k]
            if old[k] then
                local o = {struct.unpack(PANE, old[k])}
                for f = 1, NF do v[f] = v[f] + o[f] end
            end
            args[#args + 1] = seg
            args[#args + 1] = struct.pack(PANE, unpack(v, 1, NF))
        end
        chunked('HSET', pkey, args, 2)
        zadd[#zadd + 1] = string.format('%d', idx)
        zadd[#zadd + 1] = string.format('%d', idx)
    end
    chunked('ZADD', prefix .. ':panes:' .. unit .. ':' .. w.name, zadd, 2)
end

-- 4. Window hashes: counts and derived fields rewritten together, so a
-- reader never sees NPS disagree with the counts.
local HFIELDS = {'h0', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'h7', 'h8', 'h9', 'h10', 'sent'}
local stamp = string.format('%d', now)
local touched = 0
for _, o in ipairs(order) do
    local seg, wi, d = o[1], o[2], acc[o[3]]
    local changed = false
    for f = 1, NF do
        if d[f] ~= 0 then changed = true end
    end
    if changed then
        touched = touched + 1
        local wkey = prefix .. ':win:' .. view .. ':' .. seg .. ':' .. windows[wi].name
        local old = redis.call('HMGET', wkey, unpack(HFIELDS))
        local h, n, old_n = {}, 0, 0
        for f = 1, NF do
            local was = tonumber(old[f]) or 0
            h[f] = was + d[f]
            if f <= 11 then
                n = n + h[f]
                old_n = old_n + was
            end
        end
        local pro, pas, det, sum = h[10] + h[11], h[8] + h[9], 0, 0
        for f = 1, 7 do det = det + h[f] end
        for f = 1, 11 do sum = sum + (f - 1) * h[f] end
        local args = {'responses', n, 'promoters', pro, 'passives', pas, 'detractors', det,
                      'score_sum', sum, 'sent', h[12], 'updated_ms', stamp}
        for f = 1, 11 do
            args[#args + 1] = HFIELDS[f]
            args[#args + 1] = h[f]
        end
        local gone = {}
        if n > 0 then
            local ps, ds = pro / n, det / n
            local var = ps + ds - (ps - ds) * (ps - ds)
            if var < 0 then var = 0 end
            args[#args + 1] = 'nps'
            args[#args + 1] = string.format('%.4f', 100 * (pro - det) / n)
            args[#args + 1] = 'moe95'
            args[#args + 1] = string.format('%.4f', 1.96 * 100 * math.sqrt(var / n))
            args[#args + 1] = 'avg'
            args[#args + 1] = string.format('%.4f', sum / n)
        elseif old_n > 0 then
            gone = {'nps', 'moe95', 'avg'}
        end
        if h[12] > 0 then
            args[#args + 1] = 'response_rate'
            args[#args + 1] = string.format('%.6f', n / h[12])
        elseif (tonumber(old[12]) or 0) > 0 then
            gone[#gone + 1] = 'response_rate'
        end
        redis.call('HSET', wkey, unpack(args))
        if #gone > 0 then redis.call('HDEL', wkey, unpack(gone)) end
    end
end

-- 5. Segment set, catalogue, fences, and the notification.
if #segments > 0 then chunked('SADD', prefix .. ':segments:' .. view, segments, 1) end
redis.call('HSET', prefix .. ':views', view, dims)
local wargs = {}
for _, w in ipairs(windows) do
    wargs[#wargs + 1] = w.name
    wargs[#wargs + 1] = string.format('%d', w.size)
end
redis.call('HSET', prefix .. ':windows', unpack(wargs))
if #parts > 0 then
    local fset = {}
    for i, part in ipairs(parts) do
        fset[#fset + 1] = fence_fields[i]
        fset[#fset + 1] = string.format('%d', part.e)
    end
    chunked('HSET', okey, fset, 2)
end
if #segments > 0 or expired > 0 then
    redis.call('XADD', prefix .. ':updates', 'MAXLEN', '~', 10000, '*', 'flush', flush_id,
               'view', view, 'unit', unit, 'segments', #segments, 'windows_touched', touched,
               'expired_panes', expired, 'now_ms', stamp)
end
return {'ok', #segments, expired}
