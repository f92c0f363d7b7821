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

-- Deltas per (segment, window): acc[wi][seg] = {12 counts}, with the
-- segments of each window in first-touched order.
local acc, order = {}, {}
local function add(seg, wi, counts, sign)
    local per = acc[wi]
    if not per then
        per = {}
        acc[wi] = per
        order[wi] = {}
    end
    local a = per[seg]
    if not a then
        per[seg] = counts
        local o = order[wi]
        o[#o + 1] = seg
        if sign < 0 then
            for f = 1, NF do counts[f] = -counts[f] end
        end
        return
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
        local w1, idx, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, nextpos =
            struct.unpack(ENTRY, data, pos)
        pos = nextpos
        local wi = w1 + 1
        local w = windows[wi]
        if w.size == 0 or idx >= low[wi] then
            local counts = {c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12}
            if w.size > 0 then
                local byidx = panes[wi]
                if not byidx then
                    byidx = {}
                    panes[wi] = byidx
                end
                local p = byidx[idx]
                if not p then
                    p = {segs = {}, vals = {}}
                    byidx[idx] = p
                end
                p.segs[#p.segs + 1] = seg
                -- a copy: add() may keep `counts` as the running sum
                p.vals[#p.vals + 1] = {c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12}
            end
            add(seg, wi, counts, 1)
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

-- Rewrite one window hash: only the fields whose value changes, plus
-- updated_ms. Each field written costs Redis time; unchanged ones are
-- skipped.
local function write_window(wkey, d)
    local old = redis.call('HMGET', wkey, 'h0', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'h7', 'h8',
                           'h9', 'h10', 'sent')
    local args = {'updated_ms', stamp}
    local n, o_n, pro, o_pro, det, o_det, sum, o_sum = 0, 0, 0, 0, 0, 0, 0, 0
    for f = 1, NF do
        local was = tonumber(old[f]) or 0
        local now_v = was + d[f]
        if d[f] ~= 0 or not old[f] then
            args[#args + 1] = HFIELDS[f]
            args[#args + 1] = now_v
        end
        if f <= 11 then
            n, o_n = n + now_v, o_n + was
            sum, o_sum = sum + (f - 1) * now_v, o_sum + (f - 1) * was
            if f >= 10 then
                pro, o_pro = pro + now_v, o_pro + was
            elseif f <= 7 then
                det, o_det = det + now_v, o_det + was
            end
        else
            if now_v > 0 and (d[f] ~= 0 or n ~= o_n) then
                args[#args + 1] = 'response_rate'
                args[#args + 1] = string.format('%.6f', n / now_v)
            end
        end
    end
    local fresh = not old[1]
    local pas, o_pas = n - pro - det, o_n - o_pro - o_det
    if fresh or n ~= o_n then args[#args + 1] = 'responses'; args[#args + 1] = n end
    if fresh or pro ~= o_pro then args[#args + 1] = 'promoters'; args[#args + 1] = pro end
    if fresh or pas ~= o_pas then args[#args + 1] = 'passives'; args[#args + 1] = pas end
    if fresh or det ~= o_det then args[#args + 1] = 'detractors'; args[#args + 1] = det end
    if fresh or sum ~= o_sum then args[#args + 1] = 'score_sum'; args[#args + 1] = sum end
    if n > 0 and (fresh or n ~= o_n or pro ~= o_pro or det ~= o_det or sum ~= o_sum) then
        local ps, ds = pro / n, det / n
        local var = ps + ds - (ps - ds) * (ps - ds)
        if var < 0 then var = 0 end
        args[#args + 1] = 'nps'
        args[#args + 1] = string.format('%.4f', 100 * (pro - det) / n)
        args[#args + 1] = 'moe95'
        args[#args + 1] = string.format('%.4f', 196 * math.sqrt(var / n))
        args[#args + 1] = 'avg'
        args[#args + 1] = string.format('%.4f', sum / n)
    end
    redis.call('HSET', wkey, unpack(args))
    local gone = {}
    if n == 0 and o_n > 0 then gone = {'nps', 'moe95', 'avg'} end
    local sent, o_sent = (tonumber(old[12]) or 0) + d[12], tonumber(old[12]) or 0
    if sent == 0 and o_sent > 0 then gone[#gone + 1] = 'response_rate' end
    if #gone > 0 then redis.call('HDEL', wkey, unpack(gone)) end
end

for wi, segs in pairs(order) do
    local per = acc[wi]
    local wname = windows[wi].name
    local base = prefix .. ':win:' .. view .. ':'
    for _, seg in ipairs(segs) do
        local d = per[seg]
        local changed = false
        for f = 1, NF do
            if d[f] ~= 0 then
                changed = true
                break
            end
        end
        if changed then
            touched = touched + 1
            write_window(base .. seg .. ':' .. wname, d)
        end
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
