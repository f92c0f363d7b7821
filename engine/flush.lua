-- flush.lua: one unit of a flush, applied atomically (docs/redis-schema.md).
--
-- A unit owns the keys of one view. In one script it checks its fences,
-- drops the panes that left each window, adds the new pane deltas, rewrites
-- the window hashes it touched (counts and derived fields together), and
-- advances its fences. Either all of that happens or none of it.
--
-- ARGV: 1 prefix, 2 group, 3 topic, 4 unit, 5 view, 6 the view's dimensions
-- (comma-separated), 7 now (epoch ms), 8 flush id, 9 windows
-- "name:size_ms:pane_ms:panes:kind;..." (kind w: a window, h: a window
-- that keeps comment themes, t: a trend; total has 0:0:0:w), 10 fences
-- "partition:begin:end;..." (begin -1: no fence yet), 11 alerts
-- "window:baseline:z:min_responses;...", 12 the view's benchmarks
-- "dim=value<TAB>nps<LF>..." (value percent-encoded as in segments), 13 the
-- detractor stream's MAXLEN, 14 D: the number of detractor arguments that
-- follow (section 6), then pairs (segment, entries). entries is binary:
-- per (window, pane) one record "<Bi8" window index (0-based), pane index, then 15 little-endian
-- int64: h0..h10, sent, and the value in cents of promoters, passives and
-- detractors; then, for a window that keeps themes, per (pane, class)
-- "<BBi8BBB" 255, window index, pane index, class (0 promoters, 1
-- passives, 2 detractors), the sketch's capacity, n, and n times "<I4B"
-- count, length, then the term's bytes.
--
-- With ARGV[4] (the unit) empty, the script only moves the fences of
-- quiet units (see "Quiet units" below).
--
-- Returns {"ok", segments, expired panes, next expiry (ms, -1: none)},
-- {"applied"} when every fence
-- already equals its end (a retry of a unit whose reply was lost), or
-- {"mismatch", "partition:stored;..."} when a fence is neither: someone
-- else has applied part of this range, so nothing is written.

local prefix, group, topic, unit, view, dims = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local now = tonumber(ARGV[7])
local flush_id = ARGV[8]
local NF = 15 -- h0..h10, sent, value cents by class
local PANE_BYTES = 8 * NF
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

-- Panes stored before values were counted hold 12 counts: the rest are 0.
local function widen(s)
    if #s < PANE_BYTES then return s .. string.rep('\0', PANE_BYTES - #s) end
    return s
end

-- Fences. A unit's fences as sent, "partition:begin:end;...": fields
-- "unit:partition", and begins and ends as text (compared and written
-- back as is, no number conversions).
local okey = prefix .. ':offsets:' .. group .. ':' .. topic
local function parse_fences(u, spec)
    local fields, begins, ends = {}, {}, {}
    for p, b, e in string.gmatch(spec, '(%d+):(%-?%d+):(%-?%d+)') do
        fields[#fields + 1] = u .. ':' .. p
        begins[#begins + 1] = b
        ends[#ends + 1] = e
    end
    return fields, begins, ends
end

-- Where the stored fences (HMGET of fields from index `at` + 1) stand:
-- 'begin' when every one is at its begin, 'end' when every one is at its
-- end (a retry whose reply was lost), else "partition:stored;..." (a
-- mismatch: someone else has applied part of this range).
local function fence_state(fields, begins, ends, stored, at)
    local at_begin, at_end = true, true
    for i = 1, #fields do
        local s = stored[at + i] or '-1' -- false when absent
        if s ~= begins[i] then at_begin = false end
        if s ~= ends[i] then at_end = false end
    end
    if at_begin then return 'begin' end
    if at_end then return 'end' end
    local seen = {}
    for i = 1, #fields do
        seen[i] = string.match(fields[i], ':(%d+)$') .. ':' .. (stored[at + i] or '-1')
    end
    return table.concat(seen, ';')
end

-- Quiet units (ARGV[4] empty): units with nothing to write, whose fences
-- move together. ARGV[5..] are pairs (unit, fences). Returns per unit 1
-- (moved), 2 (already at the end) or the mismatch report (those fences
-- are left as they are).
if unit == '' then
    local units, all = {}, {}
    for i = 5, #ARGV - 1, 2 do
        local fields, begins, ends = parse_fences(ARGV[i], ARGV[i + 1])
        units[#units + 1] = {fields = fields, begins = begins, ends = ends, at = #all}
        for _, f in ipairs(fields) do all[#all + 1] = f end
    end
    local stored = chunked('HMGET', okey, all, 1)
    local out, set = {}, {}
    for k, u in ipairs(units) do
        local state = fence_state(u.fields, u.begins, u.ends, stored, u.at)
        if state == 'begin' then
            for i, f in ipairs(u.fields) do
                set[#set + 1] = f
                set[#set + 1] = u.ends[i]
            end
            out[k] = 1
        else
            out[k] = state == 'end' and 2 or state
        end
    end
    chunked('HSET', okey, set, 2)
    return out
end

local windows = {}
for name, size, pane, npanes, kind in
    string.gmatch(ARGV[9], '([^:;]+):(%d+):(%d+):(%d+):(%a)') do
    windows[#windows + 1] = {name = name, size = tonumber(size), pane = tonumber(pane),
                             npanes = tonumber(npanes), trend = kind == 't',
                             themes = kind == 'h'}
end

-- Themes: zdiff[key][term] is the change of a term's count in the
-- window's sorted set PREFIX:themes:VIEW:SEGMENT:WINDOW:CLASS, from the
-- panes that left the window and the new terms; applied in step 5b.
local CLASSES = {'promoters', 'passives', 'detractors'}
local zdiff, zorder = {}, {}
local function theme_key(seg, w, class)
    return prefix .. ':themes:' .. view .. ':' .. seg .. ':' .. w.name .. ':' .. CLASSES[class + 1]
end
local function zchange(key, w, term, by)
    local d = zdiff[key]
    if not d then
        d = {terms = {}, order = {}, w = w}
        zdiff[key] = d
        zorder[#zorder + 1] = key
    end
    if not d.terms[term] then
        d.terms[term] = 0
        d.order[#d.order + 1] = term
    end
    d.terms[term] = d.terms[term] + by
end

-- A theme pane's field "SEGMENT<TAB>CLASS" holds "term count term count..."
local function theme_pane_key(w, idx)
    return prefix .. ':tpane:' .. unit .. ':' .. w.name .. ':' .. string.format('%d', idx)
end
local function parse_terms(text)
    local t = {}
    if text then
        for term, count in string.gmatch(text, '(%S+) (%d+)') do t[term] = tonumber(count) end
    end
    return t
end

-- 1. Fences: every partition of the flush must stand where it began.
local fence_fields, begins, ends = parse_fences(unit, ARGV[10])
local nparts = #fence_fields
if nparts > 0 then
    local state = fence_state(fence_fields, begins, ends,
                              chunked('HMGET', okey, fence_fields, 1), 0)
    if state == 'end' then return {'applied'} end
    if state ~= 'begin' then return {'mismatch', state} end
end

-- t[k], a new table there when there is none.
local function child(t, k)
    local c = t[k]
    if not c then
        c = {}
        t[k] = c
    end
    return c
end

-- map[wi], the per-segment table of window wi, with seg appended to
-- order[wi] (the segments of each window in first-touched order) when
-- it is new there.
local function per_window(map, order, wi, seg)
    local per = child(map, wi)
    if per[seg] == nil then
        local o = child(order, wi)
        o[#o + 1] = seg
    end
    return per
end

-- Deltas per (segment, window): acc[wi][seg] = {NF counts}.
local acc, order = {}, {}
local function add(seg, wi, counts, sign)
    local per = per_window(acc, order, wi, seg)
    local a = per[seg]
    if not a then
        if sign < 0 then
            for f = 1, NF do counts[f] = -counts[f] end
        end
        per[seg] = counts
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
    if w.trend then
        low[i] = math.floor(now / w.pane) - (w.npanes - 1)
    elseif w.size > 0 then
        finite[#finite + 1] = i
    end
end
if #finite > 0 then
    local names = {}
    for k, wi in ipairs(finite) do names[k] = windows[wi].name end
    local stored = redis.call('HMGET', lowkey, unpack(names))
    local moved = {}
    for k, wi in ipairs(finite) do
        local w = windows[wi]
        local l = math.floor(now / w.pane) - (w.npanes - 1)
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
                    add(kv[j], wi, {struct.unpack(PANE, widen(kv[j + 1]))}, -1)
                end
                redis.call('DEL', pkey)
                expired = expired + 1
                if w.themes then
                    local tkey = theme_pane_key(w, tonumber(idx))
                    local tv = redis.call('HGETALL', tkey)
                    for j = 1, #tv, 2 do
                        local seg, class = string.match(tv[j], '^(.*)\t(%d)$')
                        local zkey = theme_key(seg, w, tonumber(class))
                        for term, count in pairs(parse_terms(tv[j + 1])) do
                            zchange(zkey, w, term, -count)
                        end
                    end
                    redis.call('DEL', tkey)
                end
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

-- New theme sketches, grouped by pane: tpanes[wi][idx] = {fields, sketches}.
local tpanes = {}
local function theme_record(seg, data, pos)
    local _, w1, idx, class, cap, n, nextpos = struct.unpack('<BBi8BBB', data, pos)
    pos = nextpos
    local terms = {}
    for _ = 1, n do
        local count, term
        count, term, pos = struct.unpack('<I4Bc0', data, pos)
        terms[#terms + 1] = {term, count}
    end
    local wi = w1 + 1
    if idx >= low[wi] then
        local p = child(child(tpanes, wi), idx)
        if not p.fields then
            p.fields, p.sketches, p.cap = {}, {}, cap
        end
        p.fields[#p.fields + 1] = seg .. '\t' .. class
        p.sketches[#p.sketches + 1] = {seg = seg, class = class, terms = terms}
    end
    return pos
end

-- 3. The new deltas: into their panes (kept for expiry) and the totals;
-- a trend's into its buckets.
local FIRST_DETRACTOR = 15
local FIRST_PAIR = FIRST_DETRACTOR + tonumber(ARGV[14])
local segments = {}
local panes = {} -- panes[wi][idx] = {segs = {...}, vals = {...}}
local trends = {} -- trends[wi][seg] = {idx = counts, ...}, with trend_order[wi]
local trend_order = {}
for i = FIRST_PAIR, #ARGV - 1, 2 do
    local seg, data = ARGV[i], ARGV[i + 1]
    segments[#segments + 1] = seg
    local pos = 1
    while pos <= #data do
        if string.byte(data, pos) == 255 then
            pos = theme_record(seg, data, pos)
        else
        local w1, idx, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15,
              nextpos = struct.unpack(ENTRY, data, pos)
        pos = nextpos
        local wi = w1 + 1
        local w = windows[wi]
        if w.trend then
            if idx >= low[wi] then
                local per = per_window(trends, trend_order, wi, seg)
                child(per, seg)[idx] = {c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11}
            end
        elseif w.size == 0 or idx >= low[wi] then
            local counts = {c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15}
            if w.size > 0 then
                local p = child(child(panes, wi), idx)
                if not p.segs then
                    p.segs, p.vals = {}, {}
                end
                p.segs[#p.segs + 1] = seg
                -- a copy: add() may keep `counts` as the running sum
                p.vals[#p.vals + 1] = {c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13,
                                       c14, c15}
            end
            add(seg, wi, counts, 1)
        end
        -- else the pane already left this window: the event counts in the
        -- larger windows and `total` only.
        end
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
                local o = {struct.unpack(PANE, widen(old[k]))}
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

-- 3b. Theme panes: each (segment, class) of a pane keeps at most `cap`
-- terms, the largest after adding the new counts (ties: the smaller term
-- stays); what changes moves the window's sorted set by the same amount,
-- so the set is always the sum of the window's theme panes.
for wi, byidx in pairs(tpanes) do
    local w = windows[wi]
    for idx, p in pairs(byidx) do
        local tkey = theme_pane_key(w, idx)
        local old = chunked('HMGET', tkey, p.fields, 1)
        local args = {}
        for k, sk in ipairs(p.sketches) do
            local was = parse_terms(old[k])
            local now, n = {}, 0
            for term, count in pairs(was) do
                now[term] = count
                n = n + 1
            end
            for _, tc in ipairs(sk.terms) do
                local c = now[tc[1]]
                if not c then n = n + 1 end
                now[tc[1]] = (c or 0) + tc[2]
            end
            while n > p.cap do -- the smallest leave (ties: the larger term)
                local worst, least
                for term, count in pairs(now) do
                    if not worst or count < least or (count == least and term > worst) then
                        worst, least = term, count
                    end
                end
                now[worst] = nil
                n = n - 1
            end
            local zkey, text = theme_key(sk.seg, w, sk.class), {}
            for term, count in pairs(now) do
                text[#text + 1] = term .. ' ' .. count
                local by = count - (was[term] or 0)
                if by ~= 0 then zchange(zkey, w, term, by) end
            end
            for term, count in pairs(was) do
                if not now[term] then zchange(zkey, w, term, -count) end
            end
            args[#args + 1] = p.fields[k]
            args[#args + 1] = table.concat(text, ' ')
        end
        chunked('HSET', tkey, args, 2)
        -- outlives its stay in the window; left behind only when the view
        -- stops keeping themes
        redis.call('PEXPIRE', tkey, w.size + w.pane)
    end
end

-- 4. Window hashes: counts and derived fields rewritten together, so a
-- reader never sees NPS disagree with the counts.
local HFIELDS = {'h0', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'h7', 'h8', 'h9', 'h10', 'sent',
                 'value_promoters', 'value_passives', 'value_detractors'}
local stamp = string.format('%d', now)
local touched = 0

-- Money is kept exactly: cents as integers, written with two decimals.
local function money(cents)
    return string.format('%d.%02d', math.floor(cents / 100), cents % 100)
end
local function cents_of(text)
    if not text then return 0 end
    local units, hundredths = string.match(text, '^(%d+)%.(%d%d)$')
    return tonumber(units) * 100 + tonumber(hundredths)
end

-- Benchmarks of this view: the segment part "dim=value" -> reference NPS.
local benchmarks = {}
for needle, ref in string.gmatch(ARGV[12], '([^\t\n]+)\t([^\n]+)\n') do
    benchmarks[#benchmarks + 1] = {needle = ',' .. needle .. ',', ref = tonumber(ref)}
end
local function benchmark_of(seg)
    if #benchmarks == 0 then return nil end
    local padded = ',' .. seg .. ','
    for _, b in ipairs(benchmarks) do
        if string.find(padded, b.needle, 1, true) then return b.ref end
    end
    return nil
end

-- Rewrite one window hash: only the fields whose value changes, plus
-- updated_ms. Each field written costs Redis time; unchanged ones are
-- skipped. Returns the window's responses, promoters and detractors.
local function write_window(wkey, d, seg)
    local old = redis.call('HMGET', wkey, unpack(HFIELDS))
    local args = {'updated_ms', stamp}
    local n, o_n, pro, o_pro, det, o_det, sum, o_sum = 0, 0, 0, 0, 0, 0, 0, 0
    for f = 1, 11 do
        local was = tonumber(old[f]) or 0
        local v = was + d[f]
        if d[f] ~= 0 or not old[f] then
            args[#args + 1] = HFIELDS[f]
            args[#args + 1] = v
        end
        n, o_n = n + v, o_n + was
        sum, o_sum = sum + (f - 1) * v, o_sum + (f - 1) * was
        if f >= 10 then
            pro, o_pro = pro + v, o_pro + was
        elseif f <= 7 then
            det, o_det = det + v, o_det + was
        end
    end
    local o_sent = tonumber(old[12]) or 0
    local sent = o_sent + d[12]
    if d[12] ~= 0 or not old[12] then
        args[#args + 1] = 'sent'
        args[#args + 1] = sent
    end
    if sent > 0 and (d[12] ~= 0 or n ~= o_n) then
        args[#args + 1] = 'response_rate'
        args[#args + 1] = string.format('%.6f', n / sent)
    end
    local fresh = not old[1]
    local pas, o_pas = n - pro - det, o_n - o_pro - o_det
    if fresh or n ~= o_n then args[#args + 1] = 'responses'; args[#args + 1] = n end
    if fresh or pro ~= o_pro then args[#args + 1] = 'promoters'; args[#args + 1] = pro end
    if fresh or pas ~= o_pas then args[#args + 1] = 'passives'; args[#args + 1] = pas end
    if fresh or det ~= o_det then args[#args + 1] = 'detractors'; args[#args + 1] = det end
    if fresh or sum ~= o_sum then args[#args + 1] = 'score_sum'; args[#args + 1] = sum end
    local gone
    if n > 0 and (fresh or n ~= o_n or pro ~= o_pro or det ~= o_det or sum ~= o_sum) then
        local ps, ds = pro / n, det / n
        local var = ps + ds - (ps - ds) * (ps - ds)
        if var < 0 then var = 0 end
        local nps = 100 * (pro - det) / n
        args[#args + 1] = 'nps'
        args[#args + 1] = string.format('%.4f', nps)
        args[#args + 1] = 'moe95'
        args[#args + 1] = string.format('%.4f', 196 * math.sqrt(var / n))
        args[#args + 1] = 'avg'
        args[#args + 1] = string.format('%.4f', sum / n)
        local ref = benchmark_of(seg)
        if ref then
            args[#args + 1] = 'benchmark'
            args[#args + 1] = string.format('%.4f', ref)
            args[#args + 1] = 'benchmark_gap'
            args[#args + 1] = string.format('%.4f', nps - ref)
        end
    end
    -- Value-weighted: present while the window holds any value.
    if d[13] ~= 0 or d[14] ~= 0 or d[15] ~= 0 then
        local vp = cents_of(old[13]) + d[13]
        local vpa = cents_of(old[14]) + d[14]
        local vd = cents_of(old[15]) + d[15]
        local value = vp + vpa + vd
        if value > 0 then
            args[#args + 1] = 'value_promoters'
            args[#args + 1] = money(vp)
            args[#args + 1] = 'value_passives'
            args[#args + 1] = money(vpa)
            args[#args + 1] = 'value_detractors'
            args[#args + 1] = money(vd)
            args[#args + 1] = 'value_nps'
            args[#args + 1] = string.format('%.4f', 100 * (vp - vd) / value)
            args[#args + 1] = 'revenue_at_risk'
            args[#args + 1] = money(vd)
        else
            gone = {'value_promoters', 'value_passives', 'value_detractors', 'value_nps',
                    'revenue_at_risk'}
        end
    end
    redis.call('HSET', wkey, unpack(args))
    if n == 0 and o_n > 0 then
        gone = gone or {}
        for _, f in ipairs({'nps', 'moe95', 'avg', 'benchmark', 'benchmark_gap'}) do
            gone[#gone + 1] = f
        end
    end
    if sent == 0 and o_sent > 0 then
        gone = gone or {}
        gone[#gone + 1] = 'response_rate'
    end
    if gone then redis.call('HDEL', wkey, unpack(gone)) end
    return n, pro, det
end

-- Alerts: WINDOW against BASELINE, by a two-proportion z-test of NPS
-- (p - d, with variance (p + d - (p - d)^2) / n in each window).
local alerts = {}
for win, base, z, minn in string.gmatch(ARGV[11], '([^:;]+):([^:;]+):([^:;]+):(%d+)') do
    local a = {z = tonumber(z), minn = tonumber(minn), field = 'alert_' .. base,
               wname = win, bname = base}
    for wi, w in ipairs(windows) do
        if not w.trend and w.name == win then a.w = wi end
        if not w.trend and w.name == base then a.b = wi end
    end
    if a.w and a.b then alerts[#alerts + 1] = a end
end
local alerts_fired = 0

local function counts_of(wkey)
    local r = redis.call('HMGET', wkey, 'responses', 'promoters', 'detractors')
    return tonumber(r[1]) or 0, tonumber(r[2]) or 0, tonumber(r[3]) or 0
end

local function check_alert(a, seg, res, base)
    local rw, rb = res[a.w], res[a.b]
    if not rw and not rb then return end
    local wkey = base .. seg .. ':' .. a.wname
    local n1, p1, d1
    if rw then n1, p1, d1 = rw[1], rw[2], rw[3] else n1, p1, d1 = counts_of(wkey) end
    local n2, p2, d2
    if rb then
        n2, p2, d2 = rb[1], rb[2], rb[3]
    else
        n2, p2, d2 = counts_of(base .. seg .. ':' .. a.bname)
    end
    local firing, z, dir = false, 0, ''
    if n1 >= a.minn and n2 >= a.minn then
        local s1, s2 = (p1 - d1) / n1, (p2 - d2) / n2
        local v1 = ((p1 + d1) / n1 - s1 * s1) / n1
        local v2 = ((p2 + d2) / n2 - s2 * s2) / n2
        if v1 + v2 > 0 then
            z = (s1 - s2) / math.sqrt(v1 + v2)
            firing = math.abs(z) > a.z
            dir = z < 0 and 'down' or 'up'
        end
    end
    local was = redis.call('HGET', wkey, a.field)
    if firing == (was ~= false and was ~= nil) then return end
    if firing then
        redis.call('HSET', wkey, a.field, dir)
    else
        redis.call('HDEL', wkey, a.field)
    end
    local nps1 = n1 > 0 and string.format('%.4f', 100 * (p1 - d1) / n1) or ''
    local nps2 = n2 > 0 and string.format('%.4f', 100 * (p2 - d2) / n2) or ''
    redis.call('XADD', prefix .. ':alerts', 'MAXLEN', '~', 10000, '*', 'view', view,
               'segment', seg, 'window', a.wname, 'baseline', a.bname,
               'state', firing and 'firing' or 'resolved', 'direction', firing and dir or was,
               'nps', nps1, 'baseline_nps', nps2, 'n', n1, 'baseline_n', n2,
               'z', string.format('%.4f', z), 'now_ms', stamp)
    alerts_fired = alerts_fired + 1
end

-- Per segment, every window it touched, then its alerts.
local by_seg, seg_order = {}, {}
for wi, segs in pairs(order) do
    local per = acc[wi]
    for _, seg in ipairs(segs) do
        local d = per[seg]
        for f = 1, NF do
            if d[f] ~= 0 then
                local t = by_seg[seg]
                if not t then
                    t = {}
                    by_seg[seg] = t
                    seg_order[#seg_order + 1] = seg
                end
                t[wi] = d
                break
            end
        end
    end
end
local base = prefix .. ':win:' .. view .. ':'
local with_alerts = #alerts > 0
for _, seg in ipairs(seg_order) do
    local t = by_seg[seg]
    local res = with_alerts and {} or nil
    for wi, w in ipairs(windows) do
        local d = t[wi]
        if d then
            touched = touched + 1
            local n, pro, det = write_window(base .. seg .. ':' .. w.name, d, seg)
            if res then res[wi] = {n, pro, det} end
        end
    end
    if res then
        for _, a in ipairs(alerts) do check_alert(a, seg, res, base) end
    end
end

-- 5. Trends: one hash per (segment, trend), a field per bucket start (ms):
-- "responses,promoters,passives,detractors,nps". Buckets that left the
-- span are dropped when a new one starts; an idle key expires.
local trend_buckets = 0
for wi, segs in pairs(trend_order) do
    local w = windows[wi]
    local per = trends[wi]
    for _, seg in ipairs(segs) do
        local key = prefix .. ':trend:' .. view .. ':' .. seg .. ':' .. w.name
        local fields, deltas = {}, {}
        for idx, c in pairs(per[seg]) do
            local n = 0
            for f = 1, 11 do n = n + c[f] end
            if n > 0 then
                fields[#fields + 1] = string.format('%d', idx * w.pane)
                deltas[#deltas + 1] = {n, c[10] + c[11], c[8] + c[9],
                                       c[1] + c[2] + c[3] + c[4] + c[5] + c[6] + c[7]}
            end
        end
        if #fields > 0 then
            local old = redis.call('HMGET', key, unpack(fields))
            local args, new_bucket = {}, false
            for k, field in ipairs(fields) do
                local v = deltas[k]
                if old[k] then
                    local o1, o2, o3, o4 = string.match(old[k], '^(%d+),(%d+),(%d+),(%d+)')
                    v = {v[1] + tonumber(o1), v[2] + tonumber(o2), v[3] + tonumber(o3),
                         v[4] + tonumber(o4)}
                else
                    new_bucket = true
                end
                args[#args + 1] = field
                args[#args + 1] = string.format('%d,%d,%d,%d,%.4f', v[1], v[2], v[3], v[4],
                                                100 * (v[2] - v[4]) / v[1])
            end
            redis.call('HSET', key, unpack(args))
            trend_buckets = trend_buckets + #fields
            if new_bucket then
                local first = low[wi] * w.pane
                local stale = {}
                for _, f in ipairs(redis.call('HKEYS', key)) do
                    if tonumber(f) < first then stale[#stale + 1] = f end
                end
                if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
            end
            redis.call('PEXPIRE', key, w.size + w.pane)
        end
    end
end

-- 5b. Themes: each window's sorted sets take their changes; a term whose
-- count reaches 0 leaves; an idle set expires with its window.
local themes_changed = 0
for _, key in ipairs(zorder) do
    local d = zdiff[key]
    local terms = {}
    for _, term in ipairs(d.order) do
        if d.terms[term] ~= 0 then terms[#terms + 1] = term end
    end
    if #terms > 0 then
        local scores = redis.call('ZMSCORE', key, unpack(terms))
        local zadd, zrem = {}, {}
        for k, term in ipairs(terms) do
            local v = (tonumber(scores[k]) or 0) + d.terms[term]
            if v > 0 then
                zadd[#zadd + 1] = string.format('%d', v)
                zadd[#zadd + 1] = term
            else
                zrem[#zrem + 1] = term
            end
        end
        if #zadd > 0 then
            chunked('ZADD', key, zadd, 2)
            redis.call('PEXPIRE', key, d.w.size + d.w.pane)
        end
        if #zrem > 0 then chunked('ZREM', key, zrem, 1) end
        themes_changed = themes_changed + #terms
    end
end

-- 6. Detractor follow-up: each detractor response once, in one unit of the
-- detractor view, the view with the most dimensions, picked by a hash of
-- its partition and offset (its fences make it exactly once; spread over
-- that view's units, a backlog's entries do not hold Redis in one script). When
-- D > 0, ARGV[15] names an entry's fields ("id,score,ts,...", a trailing
-- `?` marks a field left out when empty) and the other D - 1 arguments
-- hold the entries back to back, each its values in that order as "<I4c0"
-- (length, bytes): a few large arguments cost Redis far less than two
-- per field.
local detractors = 0
local dkey, maxlen = prefix .. ':detractors', ARGV[13]
if FIRST_PAIR > FIRST_DETRACTOR then
    local names, optional = {}, {}
    for name, mark in string.gmatch(ARGV[FIRST_DETRACTOR], '([^,?]+)(%??)') do
        names[#names + 1] = name
        optional[#names] = mark == '?'
    end
    local nf = #names
    local format = '<' .. string.rep('I4c0', nf)
    local fields = {}
    for i = FIRST_DETRACTOR + 1, FIRST_PAIR - 1 do
        local chunk, at = ARGV[i], 1
        while at <= #chunk do
            local values = {struct.unpack(format, chunk, at)}
            at = values[nf + 1]
            local n = 0
            for f = 1, nf do
                local value = values[f]
                if value ~= '' or not optional[f] then
                    fields[n + 1] = names[f]
                    fields[n + 2] = value
                    n = n + 2
                end
            end
            redis.call('XADD', dkey, 'MAXLEN', '~', maxlen, '*', unpack(fields, 1, n))
            detractors = detractors + 1
        end
    end
end

-- 7. Segment set, catalogue, fences, and the notification.
if #segments > 0 then chunked('SADD', prefix .. ':segments:' .. view, segments, 1) end
redis.call('HSET', prefix .. ':views', view, dims)
local wargs, targs = {}, {}
for _, w in ipairs(windows) do
    if w.trend then
        targs[#targs + 1] = w.name
        targs[#targs + 1] = string.format('%d', w.size)
    else
        wargs[#wargs + 1] = w.name
        wargs[#wargs + 1] = string.format('%d', w.size)
    end
end
redis.call('HSET', prefix .. ':windows', unpack(wargs))
if #targs > 0 then redis.call('HSET', prefix .. ':trends', unpack(targs)) end
if nparts > 0 then
    local fset = {}
    for i = 1, nparts do
        fset[2 * i - 1] = fence_fields[i]
        fset[2 * i] = ends[i]
    end
    chunked('HSET', okey, fset, 2)
end
if #segments > 0 or expired > 0 then
    redis.call('XADD', prefix .. ':updates', 'MAXLEN', '~', 10000, '*', 'flush', flush_id,
               'view', view, 'unit', unit, 'segments', #segments, 'windows_touched', touched,
               'expired_panes', expired, 'trend_buckets', trend_buckets,
               'theme_terms', themes_changed, 'alerts', alerts_fired,
               'detractors', detractors, 'now_ms', stamp)
end
-- 8. When this unit's next stored pane leaves a window (ms, engine clock;
-- -1: it holds none): until then a flush with nothing for it need not run
-- it (its fences move with the other quiet units', see above).
local next_expiry = -1
for _, wi in ipairs(finite) do
    local w = windows[wi]
    local first = redis.call('ZRANGE', prefix .. ':panes:' .. unit .. ':' .. w.name, 0, 0)
    if first[1] then
        local at = (tonumber(first[1]) + w.npanes) * w.pane
        if next_expiry < 0 or at < next_expiry then next_expiry = at end
    end
end
return {'ok', #segments, expired, next_expiry}
