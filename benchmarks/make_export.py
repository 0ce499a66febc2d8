#!/usr/bin/env python3
"""Write a synthetic Segment S3-destination export for benchmarks (stdlib only).

Layout (what the Segment S3 destination writes):

    OUT/segment-logs/<source-id>/<received-day-epoch-ms>/<n>.gz

Each file is gzipped NDJSON, one Segment message per line, all call types
mixed (about 55% track, 20% identify, 20% page, 3% screen, 1% group,
1% alias).  Of the tracks, about 25% carry one of the four event names the
example config maps ("Order Completed", "Subscription Renewed",
"Support Ticket Closed", "Onboarding Finished"), about 1% are near misses
("order completed", "Order Completed " with a trailing space,
"Order Complted", "Support ticket closed") and the rest are ~40 unmapped
names.  Track properties depend on the event's family: commerce (order_id,
revenue float, currency, items int, coupon null), subscription (plan
{name, interval}, is_trial bool, signup_date ISO date, revenue, coupon
null), support (ticket_id, priority, plan, satisfaction null) or product
(product_id, price, quantity, variant null).  On top: firstName/lastName
(on all but ~60% of product/engagement events), companyName sometimes, tags
sometimes ("a, b" string or list).
Track email: 95% in properties.email (sometimes also in
context.traits.email), 3% only in context.traits.email, 2% nowhere.
About 0.5% of lines repeat an earlier line of the same file verbatim
(at-least-once duplicate: same messageId).

Output is deterministic for a given --seed / --events / --files (each file
has its own RNG derived from the seed, so --jobs does not change it, and
gzip headers carry mtime 0 so the .gz bytes are reproducible too).

Usage:
    python benchmarks/make_export.py OUT [--events 1000000] [--files 10] [--seed 1]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gzip
import json
import math
import multiprocessing
import os
import random
import sys
import time
import unicodedata

DEFAULT_SOURCE_ID = "Zq3xS7vR1p"
# 2025-11-01T00:00:00Z: first received-day folder.
START_DAY_MS = 1761955200000
DAY_MS = 86_400_000
FILES_PER_DAY = 3
CHUNK_LINES = 20_000

MAPPED = [
    # (name, weight within the mapped 25%)
    ("Order Completed", 40),
    ("Subscription Renewed", 20),
    ("Support Ticket Closed", 25),
    ("Onboarding Finished", 15),
]
NEAR_MISS = [
    "order completed",
    "Order Completed ",
    "Order Complted",
    "Support ticket closed",
]
UNMAPPED = [
    # (name, weight)
    ("Product Viewed", 18),
    ("Product List Viewed", 8),
    ("Product Clicked", 6),
    ("Product Added", 8),
    ("Product Removed", 2),
    ("Products Searched", 5),
    ("Cart Viewed", 6),
    ("Checkout Started", 5),
    ("Checkout Step Viewed", 3),
    ("Checkout Step Completed", 3),
    ("Payment Info Entered", 3),
    ("Coupon Entered", 1),
    ("Coupon Applied", 1),
    ("Order Refunded", 1),
    ("Order Cancelled", 1),
    ("Signed In", 6),
    ("Signed Out", 2),
    ("Signed Up", 2),
    ("Account Created", 1),
    ("Password Reset", 1),
    ("Trial Started", 1),
    ("Trial Ended", 1),
    ("Subscription Started", 1),
    ("Subscription Cancelled", 1),
    ("Plan Upgraded", 1),
    ("Plan Downgraded", 1),
    ("Invoice Paid", 2),
    ("Support Ticket Opened", 2),
    ("Feature Used", 5),
    ("Report Exported", 2),
    ("File Uploaded", 2),
    ("Invite Sent", 1),
    ("Invite Accepted", 1),
    ("Video Playback Started", 2),
    ("Email Opened", 3),
    ("Email Link Clicked", 2),
    ("Notification Clicked", 1),
    ("Application Opened", 4),
    ("Application Installed", 1),
    ("Application Backgrounded", 2),
    ("Experiment Viewed", 2),
    ("Promotion Viewed", 2),
]

FIRST_NAMES = [
    "Peter",
    "Samir",
    "Michael",
    "Joanna",
    "Bill",
    "Milton",
    "Tom",
    "Anne",
    "Lena",
    "Marco",
    "Priya",
    "Arjun",
    "Sofia",
    "Lucas",
    "Emma",
    "Noah",
    "Olivia",
    "Liam",
    "Mia",
    "Ethan",
    "Chloé",
    "José",
    "Zoë",
    "Björn",
    "Siobhán",
    "Mateus",
    "Aiko",
    "Kenji",
    "Fatima",
    "Omar",
    "Grace",
    "Henry",
    "Isla",
    "Jack",
    "Kara",
    "Leo",
    "Nadia",
    "Oscar",
    "Ruth",
    "Victor",
]
LAST_NAMES = [
    "Gibbons",
    "Nagheenanajar",
    "Bolton",
    "Lumbergh",
    "Waddams",
    "Smykowski",
    "Müller",
    "García",
    "Rossi",
    "Silva",
    "Kowalski",
    "Novak",
    "Johansson",
    "O'Brien",
    "Nguyen",
    "Tanaka",
    "Patel",
    "Khan",
    "Smith",
    "Jones",
    "Brown",
    "Taylor",
    "Wilson",
    "Davies",
    "Evans",
    "Thomas",
    "Martin",
    "Bernard",
    "Dubois",
    "Fischer",
    "Weber",
    "Moreau",
    "Lefebvre",
    "Costa",
    "Santos",
    "Ivanova",
    "Haddad",
    "Okafor",
    "Mensah",
    "Lindqvist",
]
COMPANIES = [
    "Initech",
    "Initrode",
    "Acme Corp",
    "Globex",
    "Umbrella Retail",
    "Hooli",
    "Vandelay Industries",
    "Stark Logistics",
    "Wayne Foods",
    "Wonka Sweets",
    "Soylent Ltd",
    "Cyberdyne Systems",
    "Tyrell Partners",
    "Pied Piper",
    "Massive Dynamic",
    "Oscorp",
    "Gringotts Finance",
    "Monarch Solutions",
    "Bluth Company",
    "Dunder Mifflin",
    "Prestige Worldwide",
    "Los Pollos",
    "Sterling Cooper",
    "Aperture Labs",
    "Black Mesa",
    "Nakatomi Trading",
    "Virtucon",
    "Kramerica",
    "Paper Street Soap",
    "Gekko & Co",
]
DOMAINS = ["example.com", "example.org"]
TAGS = [
    "vip",
    "beta",
    "enterprise",
    "smb",
    "churn-risk",
    "newsletter",
    "eu",
    "us",
    "apac",
    "promo",
    "wholesale",
    "referral",
]
PLANS = [
    ("Starter", "month"),
    ("Growth", "month"),
    ("Growth", "year"),
    ("Business", "year"),
    ("Enterprise", "year"),
]
CURRENCIES = ["USD", "USD", "USD", "EUR", "EUR", "GBP"]
PAGES = [
    ("/", "Acme Shop - Home"),
    ("/pricing", "Pricing - Acme"),
    ("/checkout", "Checkout - Acme"),
    ("/cart", "Your cart - Acme"),
    ("/products/aeropress-go", "AeroPress Go - Acme"),
    ("/products/chemex-6-cup", "Chemex 6-Cup - Acme"),
    ("/blog/cold-brew-guide", "Cold brew guide"),
    ("/account", "My account - Acme"),
    ("/help/returns", "Returns - Help Center"),
    ("/signup", "Create your account - Acme"),
    ("/search", "Search results - Acme"),
    ("/onboarding/step-3", "Set up your workspace - Acme"),
]
REFERRERS = [
    "",
    "https://www.google.com/",
    "https://www.bing.com/",
    "https://t.co/",
    "https://news.example.org/top",
    "https://mail.example.com/",
]
SCREENS = [
    "Home",
    "Product Detail",
    "Cart",
    "Checkout",
    "Order Confirmation",
    "Settings",
    "Support Chat",
    "Onboarding",
]
USER_AGENTS = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Safari/537.36 Edg/130.0.0.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
]
LIBRARIES_SERVER = [
    '{"name":"analytics-node","version":"6.0.0"}',
    '{"name":"analytics-python","version":"2.3.2"}',
    '{"name":"analytics-ruby","version":"2.4.0"}',
]
INTEGRATIONS = ["{}", "{}", "{}", '{"All":true,"Mixpanel":false}', '{"Retently":false}']

PRIORITIES = ["low", "normal", "normal", "high", "urgent"]
# property family per event name: 0 commerce, 1 subscription, 2 support, 3 product/engagement
FAMILY = {
    "Order Completed": 0,
    "order completed": 0,
    "Order Completed ": 0,
    "Order Complted": 0,
    "Checkout Started": 0,
    "Checkout Step Completed": 0,
    "Payment Info Entered": 0,
    "Order Refunded": 0,
    "Order Cancelled": 0,
    "Cart Viewed": 0,
    "Coupon Applied": 0,
    "Invoice Paid": 0,
    "Subscription Renewed": 1,
    "Onboarding Finished": 1,
    "Signed Up": 1,
    "Account Created": 1,
    "Trial Started": 1,
    "Trial Ended": 1,
    "Subscription Started": 1,
    "Subscription Cancelled": 1,
    "Plan Upgraded": 1,
    "Plan Downgraded": 1,
    "Support Ticket Closed": 2,
    "Support ticket closed": 2,
    "Support Ticket Opened": 2,
}

N_USERS = 25_000
ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def j(value) -> str:
    """Pre-render a JSON fragment (used once per pool entry, never per event)."""
    return json.dumps(value, ensure_ascii=False)


def weighted_table(pairs, size=1000):
    """A list where random.choice gives pair[0] with probability ~ weight."""
    total = sum(w for _, w in pairs)
    table = []
    for value, w in pairs:
        table.extend([value] * max(1, round(size * w / total)))
    return table


class Pools:
    """Everything random that can be computed once, pre-rendered as JSON text."""

    def __init__(self, seed: int):
        rng = random.Random(f"pools:{seed}")
        self.users = []
        for i in range(N_USERS):
            first = rng.choice(FIRST_NAMES)
            last = rng.choice(LAST_NAMES)
            local = unicodedata.normalize("NFKD", (first + "." + last).lower().replace("'", ""))
            local = local.encode("ascii", "ignore").decode() or "user"
            email = f"{local}{i}@{rng.choice(DOMAINS)}"
            company = rng.choice(COMPANIES) if rng.random() < 0.6 else None
            user_id = "".join(rng.choice(ID_ALPHABET) for _ in range(10))
            anon = f"{rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}-4{rng.getrandbits(12):03x}-{0x8000 | rng.getrandbits(14):04x}-{rng.getrandbits(48):012x}"
            signup = _dt.date(2021, 1, 1) + _dt.timedelta(days=rng.randrange(1700))
            plan = rng.choice(PLANS)
            self.users.append(
                {
                    "uid": j(user_id),
                    "anon": j(anon),
                    "email": j(email),
                    "first": j(first),
                    "last": j(last),
                    "name": j(f"{first} {last}"),
                    "company": j(company) if company else None,
                    "signup": signup.isoformat(),
                    "plan": f'{{"name":{j(plan[0])},"interval":{j(plan[1])}}}',
                    "ip": "%d.%d.%d.%d"
                    % (
                        rng.randrange(11, 223),
                        rng.randrange(256),
                        rng.randrange(256),
                        rng.randrange(1, 255),
                    ),
                }
            )
        self.mapped = weighted_table(MAPPED)
        self.unmapped = weighted_table(UNMAPPED)
        self.event_json = {n: j(n) for n, _ in MAPPED + UNMAPPED}
        self.event_json.update({n: j(n) for n in NEAR_MISS})
        self.tag_strings = []
        self.tag_lists = []
        for _ in range(64):
            k = rng.choice([1, 2, 2, 3])
            tags = rng.sample(TAGS, k)
            self.tag_strings.append(j(", ".join(tags)))
            self.tag_lists.append(j(tags))
        self.pages = [(j(p), j(t), j("https://shop.example.com" + p)) for p, t in PAGES]
        self.referrers = [j(r) for r in REFERRERS]
        self.user_agents = [j(u) for u in USER_AGENTS]


_date_cache: dict[int, str] = {}


def iso(ms: int) -> str:
    day, rem = divmod(ms, DAY_MS)
    date = _date_cache.get(day)
    if date is None:
        date = (_dt.date(1970, 1, 1) + _dt.timedelta(days=day)).isoformat()
        _date_cache[day] = date
    h, rem = divmod(rem, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, frac = divmod(rem, 1000)
    return f"{date}T{h:02d}:{m:02d}:{s:02d}.{frac:03d}Z"


def generate_file(task) -> tuple[str, int, int]:
    """Write one .gz file; returns (path, events, uncompressed bytes)."""
    path, n_events, day_ms, seed, file_index, source_id = task
    pools = Pools(seed)
    rng = random.Random(f"file:{seed}:{file_index}")
    rand = rng.random
    randrange = rng.randrange
    choice = rng.choice
    getrandbits = rng.getrandbits
    users = pools.users
    n_users = len(users)
    mapped, unmapped, event_json = pools.mapped, pools.unmapped, pools.event_json
    tag_strings, tag_lists = pools.tag_strings, pools.tag_lists
    pages, referrers, uas = pools.pages, pools.referrers, pools.user_agents
    project = j(source_id)

    recent: list[str] = []  # ring buffer of recent lines for duplicates
    buf: list[str] = []
    total_bytes = 0
    written = 0

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with (
        open(path, "wb") as raw,
        gzip.GzipFile(
            filename=os.path.basename(path), mode="wb", compresslevel=6, fileobj=raw, mtime=0
        ) as gz,
    ):
        for _ in range(n_events):
            if recent and rand() < 0.005:
                line = recent[randrange(len(recent))]
            else:
                u = users[randrange(n_users)]
                received = day_ms + randrange(DAY_MS)
                r = rand()
                if r < 0.03:  # late arrival: happened hours or days earlier
                    ts = received - randrange(3_600_000, 20 * DAY_MS)
                else:
                    ts = received - randrange(40, 2500)
                orig = ts - randrange(0, 40)
                sent = f'"{iso(received - randrange(5, 120))}"' if rand() < 0.99 else "null"
                mid = f"ajs-{getrandbits(128):032x}"
                uid = u["uid"] if rand() < 0.9 else "null"
                times = (
                    f'"messageId":"{mid}","originalTimestamp":"{iso(orig)}","receivedAt":"{iso(received)}",'
                    f'"sentAt":{sent},"timestamp":"{iso(ts)}"'
                )
                tail = ',"userId":%s,"channel":"%s","projectId":%s,"version":2}'
                kind = randrange(100)
                if kind < 55:
                    line = _track(
                        u,
                        rand,
                        randrange,
                        choice,
                        times,
                        tail,
                        uid,
                        project,
                        mapped,
                        unmapped,
                        event_json,
                        tag_strings,
                        tag_lists,
                        pages,
                        referrers,
                        uas,
                    )
                elif kind < 75:
                    traits = [
                        '"email":' + u["email"],
                        '"firstName":' + u["first"],
                        '"lastName":' + u["last"],
                    ]
                    if u["company"]:
                        traits.append('"companyName":' + u["company"])
                    traits.append('"plan":' + u["plan"])
                    traits.append('"createdAt":"%sT09:%02d:00.000Z"' % (u["signup"], randrange(60)))
                    traits.append('"logins":%d' % randrange(1, 400))
                    line = (
                        '{{"anonymousId":{},"context":{{"ip":"{}","library":{}}},'
                        '"integrations":{},{},"traits":{{{}}},"type":"identify"'.format(
                            u["anon"],
                            u["ip"],
                            choice(LIBRARIES_SERVER),
                            choice(INTEGRATIONS),
                            times,
                            ",".join(traits),
                        )
                        + tail % (u["uid"], "server", project)
                    )
                elif kind < 95:
                    p, t, url = choice(pages)
                    ref = choice(referrers)
                    if rand() < 0.6:  # analytics.js page call
                        line = (
                            '{{"anonymousId":{},"context":{{"ip":"{}","library":{{"name":'
                            '"analytics.js","version":"next-1.70.0"}},'
                            '"page":{{"path":{},"referrer":{},"title":{},"url":{}}},'
                            '"userAgent":{}}},"integrations":{{}},{},"name":{},"properties":'
                            '{{"path":{},"referrer":{},"title":{},"url":{}}},'
                            '"type":"page"'.format(
                                u["anon"],
                                u["ip"],
                                p,
                                ref,
                                t,
                                url,
                                choice(uas),
                                times,
                                t,
                                p,
                                ref,
                                t,
                                url,
                            )
                            + tail % (uid, "client", project)
                        )
                    else:  # server-side page call (e.g. from a Next.js middleware)
                        line = (
                            '{{"anonymousId":{},"context":{{"ip":"{}","library":{}}},'
                            '"integrations":{{}},{},"name":{},"properties":'
                            '{{"path":{},"referrer":{},"title":{},"url":{}}},"type":"page"'.format(
                                u["anon"],
                                u["ip"],
                                choice(LIBRARIES_SERVER),
                                times,
                                t,
                                p,
                                ref,
                                t,
                                url,
                            )
                            + tail % (uid, "server", project)
                        )
                elif kind < 98:
                    line = (
                        '{{"anonymousId":{},"context":{{"app":{{"name":"Acme","version":'
                        '"4.2.1","build":"421"}},"device":{{"manufacturer":"Apple","model":'
                        '"iPhone14,2","type":"ios"}},"ip":"{}","library":{{"name":'
                        '"analytics-ios","version":"4.1.8"}},"os":{{"name":"iOS","version":'
                        '"17.6"}}}},"integrations":{{}},{},"name":"{}","properties":{{}},'
                        '"type":"screen"'.format(u["anon"], u["ip"], times, choice(SCREENS))
                        + tail % (uid, "mobile", project)
                    )
                elif kind < 99:
                    line = (
                        '{"anonymousId":%s,"context":{"ip":"%s","library":%s},'
                        '"groupId":"grp_%06d","integrations":{},%s,"traits":{"name":%s,'
                        '"employees":%d,"industry":"Retail","plan":"%s"},"type":"group"'
                        % (
                            u["anon"],
                            u["ip"],
                            choice(LIBRARIES_SERVER),
                            randrange(1000000),
                            times,
                            u["company"] or '"Acme Corp"',
                            randrange(2, 5000),
                            choice(PLANS)[0],
                        )
                        + tail % (u["uid"], "server", project)
                    )
                else:
                    line = (
                        '{{"anonymousId":{},"context":{{"ip":"{}","library":{{"name":'
                        '"analytics.js","version":"next-1.70.0"}}}},"integrations":{{}},{},'
                        '"previousId":{},"type":"alias"'.format(
                            u["anon"], u["ip"], times, u["anon"]
                        )
                        + tail % (u["uid"], "client", project)
                    )
                if len(recent) < 256:
                    recent.append(line)
                else:
                    recent[randrange(256)] = line
            buf.append(line)
            if len(buf) >= CHUNK_LINES:
                data = ("\n".join(buf) + "\n").encode("utf-8")
                gz.write(data)
                total_bytes += len(data)
                written += len(buf)
                buf.clear()
        if buf:
            data = ("\n".join(buf) + "\n").encode("utf-8")
            gz.write(data)
            total_bytes += len(data)
            written += len(buf)
    return path, written, total_bytes


def _track(
    u,
    rand,
    randrange,
    choice,
    times,
    tail,
    uid,
    project,
    mapped,
    unmapped,
    event_json,
    tag_strings,
    tag_lists,
    pages,
    referrers,
    uas,
) -> str:
    r = rand()
    if r < 0.25:
        name = choice(mapped)
    elif r < 0.26:
        name = choice(NEAR_MISS)
    else:
        name = choice(unmapped)

    # where the email lives: 95% properties, 3% context.traits only, 2% nowhere
    e = rand()
    props = []
    if e < 0.95:
        props.append('"email":' + u["email"])
        ctx_traits = (
            ',"traits":{{"email":{},"name":{}}}'.format(u["email"], u["name"])
            if rand() < 0.2
            else ""
        )
    elif e < 0.98:
        ctx_traits = ',"traits":{{"email":{}}}'.format(u["email"])
    else:
        ctx_traits = ""
    fam = FAMILY.get(name, 3)
    if fam != 3 or rand() < 0.4:
        props.append('"firstName":' + u["first"])
        props.append('"lastName":' + u["last"])
    if u["company"] and rand() < 0.5:
        props.append('"companyName":' + u["company"])
    t = rand()
    if t < 0.25:
        props.append('"tags":' + tag_strings[randrange(64)])
    elif t < 0.5:
        props.append('"tags":' + tag_lists[randrange(64)])
    if fam == 0:  # commerce
        props.append(
            '"order_id":"ord_%08d","revenue":%s,"currency":"%s","items":%d,"coupon":null'
            % (
                randrange(100_000_000),
                randrange(100, 50000) / 100,
                choice(CURRENCIES),
                randrange(1, 9),
            )
        )
    elif fam == 1:  # subscription / account lifecycle
        props.append(
            '"plan":{},"is_trial":{},"signup_date":"{}","revenue":{},"coupon":null'.format(
                u["plan"],
                "true" if rand() < 0.2 else "false",
                u["signup"],
                randrange(900, 90000) / 100,
            )
        )
    elif fam == 2:  # support
        props.append(
            '"ticket_id":%d,"priority":"%s","plan":%s,"satisfaction":null'
            % (randrange(10_000, 999_999), choice(PRIORITIES), u["plan"])
        )
    else:  # product / engagement
        props.append(
            '"product_id":"sku_%05d","price":%s,"quantity":%d,"variant":null'
            % (randrange(100_000), randrange(300, 30000) / 100, randrange(1, 4))
        )

    if rand() < 0.12:  # browser (analytics.js)
        p, title, url = choice(pages)
        context = (
            '{{"ip":"{}","library":{{"name":"analytics.js","version":"next-1.70.0"}},'
            '"locale":"en-US","page":{{"path":{},"referrer":{},"title":{},"url":{}}},'
            '"userAgent":{}{}}}'.format(
                u["ip"], p, choice(referrers), title, url, choice(uas), ctx_traits
            )
        )
        channel = "client"
    else:
        context = '{{"ip":"{}","library":{}{}}}'.format(
            u["ip"], choice(LIBRARIES_SERVER), ctx_traits
        )
        channel = "server"
    return (
        '{{"anonymousId":{},"context":{},"event":{},"integrations":{},{},'
        '"properties":{{{}}},"type":"track"'.format(
            u["anon"], context, event_json[name], choice(INTEGRATIONS), times, ",".join(props)
        )
        + tail % (uid, channel, project)
    )


def plan_files(out: str, events: int, files: int, seed: int, source_id: str):
    days = max(1, math.ceil(files / FILES_PER_DAY))
    tasks = []
    per_day_counter: dict[int, int] = {}
    for i in range(files):
        n = events // files + (1 if i < events % files else 0)
        day = i * days // files
        day_ms = START_DAY_MS + day * DAY_MS
        per_day_counter[day] = per_day_counter.get(day, 0) + 1
        path = os.path.join(
            out, "segment-logs", source_id, str(day_ms), "%04d.gz" % per_day_counter[day]
        )
        tasks.append((path, n, day_ms, seed, i, source_id))
    return tasks


def generate(
    out: str,
    events: int = 1_000_000,
    files: int = 10,
    seed: int = 1,
    source_id: str = DEFAULT_SOURCE_ID,
    jobs: int = 0,
) -> dict:
    """Write the export under OUT and return its statistics (importable by benchmarks)."""
    if events < 0 or files < 1:
        raise ValueError("events must be >= 0 and files >= 1")
    t0 = time.perf_counter()
    tasks = plan_files(out, events, files, seed, source_id)
    jobs = jobs or min(len(tasks), os.cpu_count() or 1)
    if jobs > 1:
        ctx = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
        with ctx.Pool(jobs) as pool:
            results = pool.map(generate_file, tasks, chunksize=1)
    else:
        results = [generate_file(t) for t in tasks]
    seconds = time.perf_counter() - t0
    n_events = sum(r[1] for r in results)
    raw_bytes = sum(r[2] for r in results)
    return {
        "events": n_events,
        "seed": seed,
        "files": len(results),
        "source_id": source_id,
        "paths": [os.path.relpath(r[0], out) for r in results],
        "day_folders": len({os.path.dirname(r[0]) for r in results}),
        "uncompressed_bytes": raw_bytes,
        "compressed_bytes": sum(os.path.getsize(r[0]) for r in results),
        "avg_bytes_per_event": raw_bytes / n_events if n_events else 0.0,
        "seconds": seconds,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="output directory (segment-logs/... is created inside)")
    ap.add_argument("--events", type=int, default=1_000_000, help="total events (default 1000000)")
    ap.add_argument("--files", type=int, default=10, help="number of .gz files (default 10)")
    ap.add_argument("--seed", type=int, default=1, help="RNG seed (default 1)")
    ap.add_argument("--source-id", default=DEFAULT_SOURCE_ID, help="Segment source id folder")
    ap.add_argument(
        "--jobs",
        type=int,
        default=0,
        help="worker processes (default: min(files, CPUs)); the output does not depend on it",
    )
    args = ap.parse_args(argv)
    if args.events < 0 or args.files < 1:
        ap.error("--events must be >= 0 and --files >= 1")

    st = generate(args.out, args.events, args.files, args.seed, args.source_id, args.jobs)
    where = os.path.join(args.out, "segment-logs", args.source_id)
    print(f"files written:       {st['files']} under {where} ({st['day_folders']} day folders)")
    print(f"events:              {st['events']}")
    raw, gz = st["uncompressed_bytes"], st["compressed_bytes"]
    print(f"uncompressed bytes:  {raw} ({raw / 1e6:.1f} MB)")
    print(f"average bytes/event: {st['avg_bytes_per_event']:.1f}")
    print(f"compressed total:    {gz} bytes ({gz / 1e6:.1f} MB)")
    print(f"seconds:             {st['seconds']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
