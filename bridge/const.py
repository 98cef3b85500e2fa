"""Every limit, timer, port and TTL in one place, each with its unit and the reason for it."""

from __future__ import annotations

# --- mDNS (RFC 6762) -------------------------------------------------------------------
MDNS_PORT = 5353
MDNS_GROUP_V4 = "224.0.0.251"
MDNS_GROUP_V6 = "ff02::fb"
MDNS_HOP_LIMIT = 255  # RFC 6762 §11: send with TTL/hop limit 255
MDNS_MAX_PACKET = 9000  # bytes; RFC 6762 §17 caps mDNS messages at 9000 bytes
MDNS_RECV_BUFFER = 9216  # bytes read per datagram (larger ones are cut and counted)
MDNS_CACHE_FLUSH_GRACE = 1.0  # s; RFC 6762 §10.2: flushed records linger one second
MDNS_GOODBYE_DELAY = 1.0  # s; RFC 6762 §10.1: TTL 0 means "delete in one second"
MDNS_SAME_QUERY_INTERVAL = 1.0  # s; RFC 6762 §5.2: never repeat a question sooner than this
MDNS_BROWSE_FIRST_INTERVAL = 1.0  # s; continuous browse starts at 1 s ...
MDNS_BROWSE_MAX_INTERVAL = 3600.0  # s; ... and doubles up to one hour (RFC 6762 §5.2)
MDNS_REFRESH_FRACTIONS = (0.80, 0.85, 0.90, 0.95)  # RFC 6762 §5.2 cache maintenance queries
MDNS_REFRESH_TICK = 0.5  # s; how often the refresh scheduler looks for due records
MDNS_REFRESH_JITTER = 0.02  # of the TTL, at random, added to each refresh point (RFC 6762 §5.2)
MDNS_REFRESH_MAX_PER_TICK = 1000  # RRsets asked for per tick; later ones wait for the next
MDNS_MAX_QUESTIONS_PER_PACKET = 40  # keeps our queries well under 1500 bytes
MDNS_MAX_POINTERS = 16  # compression hops per name (parser and packet rewrite); real packets
#   use one or two, and each hop costs a loop turn (a hostile chain cannot stall a reader)
MDNS_ASK_BATCH_DELAY = 0.02  # s; questions asked within this (misses of one DNS client, a burst
#   of new services) leave in one packet; short against the 0.9 s an on-demand miss may wait
MDNS_MAX_QUERY_BYTES = 1400  # bytes of one of our queries; keeps it inside one Ethernet frame
MDNS_BROWSE_TRACKED_MAX = 20_000  # browse schedules and last-asked stamps kept; beyond, oldest go
MDNS_BROWSE_TTL_CAP = 0.8  # of a held PTR's TTL: browse no slower than this, so the answer that
#   refreshes it is asked for before 80 % of its life (where RFC 6762 §5.2 maintenance starts)
MDNS_BROWSE_MIN_CAP = 1.0  # s; ... but never faster than once a second (§5.2 query spacing)
MDNS_NAME_MEMO_MAX = 50_000  # interned names (wire.py: most names recur); cleared when full
MDNS_LABEL_MEMO_MAX = 1024  # labels below a new name's first, shared (wire.py: service types and
#   domains, ~100 in a large network); cleared when full

# --- record store ------------------------------------------------------------------------
# records over all VLANs; when full, a VLAN below its fair share (this over the VLANs holding
# records) evicts the oldest record of the VLAN holding the most, one at its share is refused
STORE_MAX_RECORDS = 50_000
STORE_MAX_RRSET = 64  # rdatas per (VLAN, name, type); a chatty or hostile host cannot grow one name
# ... except PTR: a service type's browse list names every instance on the VLAN (an office may
# have hundreds of AirPlay receivers); still bounded, the oldest goes first beyond it
STORE_MAX_PTR_RRSET = 2048
STORE_MAX_TTL = 4 * 3600  # s; TTLs above this from the wire are clamped (hostile announcements)
STORE_SWEEP_INTERVAL = 0.25  # s; expired records are gone within this of their expiry
STORE_SOURCE_SCAN = 256  # oldest records of a full VLAN looked at for its largest source's
#   (that source holds the most, so one is near the front); none there: the new one is refused
STORE_SCHEDULE_STALE = 4  # a schedule's bucket (one second's entries, a list) is rebuilt
#   without its stale copies (entries moved away or dropped) once it holds more than this
#   times its live ones: a list slot is 8 B, so even then 32 B a record against a dict's ~41;
#   4 rather than 2: a third fewer entries read rebuilding (callgrind, 24,000 refreshes)
STORE_SCHEDULE_SLACK = 8  # entries; ... plus this: a bucket of a few is not rebuilt on every drop
STORE_SWEEP_MAX = 5000  # records removed per sweep (20,000/s); readers skip expired ones anyway
STORE_ANCESTORS_MEMO_MAX = 4096  # memoised parent names (service types and a few domains have
#   children); cleared when full

# --- DNS front end -----------------------------------------------------------------------
DNS_DEFAULT_PORT = 5300
HTTP_DEFAULT_PORT = 9353  # /metrics, /healthz, /readyz, /api (http.listen's default)
DNS_NAMESERVER_LABEL = "ns"  # the gateway's own name in each zone it serves: ns.<zone> (NS, SOA)
DNS_MAX_TTL = 10  # s; RFC 8766 §5.5.1 suggests 10 s for proxied answers (configurable)
DNS_NEGATIVE_TTL = 10  # s; SOA TTL on NXDOMAIN/NODATA (CoreDNS reads the SOA record's own TTL)
DNS_PLAIN_UDP_LIMIT = 512  # bytes; RFC 1035 limit without EDNS
DNS_MAX_UDP_PAYLOAD = 4096  # bytes; largest EDNS payload size we honour
DNS_MAX_TCP_MESSAGE = 65535  # bytes
DNS_UDP_CLAMP = 1232  # bytes; UDP answers to clients beyond loopback are cut to this whatever
#   EDNS size they ask for (DNS flag day 2020, RFC 9715: no IP fragmentation on any usual path;
#   an answer 89x its query once left at EDNS 4096); dns.max_udp_payload changes it
DNS_RRL_RATE = 100  # responses/s per client prefix (RRL, as BIND and Knot: one prefix floods, the
#   others are served); a household's direct clients share a /24 and stay far below
DNS_RRL_WINDOW = 15.0  # s; a prefix over its rate owes at most rate x window responses: limited
#   for at most this long after its flood stops (BIND's window, default 15)
DNS_RRL_SLIP = 2  # every 2nd limited response goes out as an empty TC=1 reply (a real client
#   retries over TCP, a spoofed victim gets a small packet), as BIND's default; 0 drops them all
DNS_RRL_IPV4_PREFIX = 24  # bits; client addresses counted together (BIND's and Knot's defaults)
DNS_RRL_IPV6_PREFIX = 56  # bits; a household's delegated IPv6 prefix
DNS_RRL_TABLE_MAX = 16_384  # prefixes tracked; beyond, the one tracked longest goes (it starts
#   again with a second's credit: a flooder gains a second's worth per 16,384 new prefixes)
DNS_TCP_IDLE_TIMEOUT = 30.0  # s; above CoreDNS's 10 s pool expiry so it never retries for us
DNS_TCP_MAX_CONNECTIONS = 512  # concurrent TCP clients; when full, the one idle longest is
#   closed for a new one (none idle: the new one is refused)
DNS_TCP_MAX_PER_CLIENT = 64  # connections per client address (one client held all 512); the load
#   test's 8 and CoreDNS's pool stay far below
DNS_TCP_WRITE_TIMEOUT = 10.0  # s for a client to read an answer; one that pipelines queries and
#   never reads once kept its connection for over a minute, 2.8 MB queued
DNS_TCP_MAX_PIPELINED = 64  # queries of one connection waiting for mDNS at once; then reading
#   pauses until one is answered
DNS_TCP_QUERIES_PER_TURN = 8  # pipelined queries one connection answers before it lets the event
#   loop run others: queries already buffered never suspend its reads, and 50,000 REFUSED names
#   pipelined on one connection held every other client for 3.2 s (lab, test_attacks_lab.py)
DNS_TCP_IDLE_SLACK = 1 / 30  # of DNS_TCP_IDLE_TIMEOUT (1 s of 30): how early a connection's one
#   idle timer may fire; queries move it on only when they move it by more. A timer per query
#   (and one per answer for DNS_TCP_WRITE_TIMEOUT) cost 31 vs 9 us CPU per cached TCP answer
DNS_CLOSE_ROUNDS = 10  # loop turns close() waits for connections accepted just before it (their
#   tasks start a turn later); one or two suffice, ten bound a shutdown that keeps accepting
DNS_TCP_BACKLOG = 256  # connections the kernel queues before accept (a reconnect burst of a
#   CoreDNS pool restart fits; the accept loop drains it within a wake-up)
DNS_UDP_DRAIN_BATCH = 64  # datagrams drained per reader wake-up: one recvmmsg and one sendmmsg
#   in the compiled build (udpio), whose buffers are this many DNS_MAX_UDP_PAYLOAD slots (256 KiB);
#   bounds how long one listener holds the loop
DNS_UDP_DRAIN_ROUNDS = 4  # batches per reader wake-up: after a batch the socket is read again
#   at once while it has more (what came while the batch was answered), so under load one asyncio
#   turn and one epoll_wait serve several batches; 256 datagrams at most, ~1 ms of the loop
DNS_UDP_KEY_MEMO = 4096  # slots (a power of two) of the compiled UDP batch's key memo: a query's
#   bytes after its ID kept as a bytes object, so that the next identical query is looked up with
#   an object whose hash is known (no new bytes object, no SipHash); the load test asks 1,252
#   distinct queries, most of which keep their slot. Bounded: 4096 x DNS_UDP_KEY_MEMO_BYTES
DNS_UDP_KEY_MEMO_BYTES = 128  # bytes; longer queries are not kept: at most ~0.7 MB in all; the
#   load test's 1,252 queries (27-105 bytes each) would take 137 KB, the slots 32 KB
DNS_ANSWER_CACHE_BYTES = 4 << 20  # pre-rendered answers of every view and transport together
#   (estimated, overhead included: dnsfront/cache.py); when over, the least recently used eighth
#   goes. ~8,000 answers (the load test's 200 services have 1,257 names); every name of 10,000
#   services asked once took 28 MB unbounded (100,000 REFUSED names once added 69 MB, and a full
#   cache was cleared whole, evicting everyone's answers)
DNS_RESPONSE_VARIANTS_MAX = 2_000  # per view and transport, answers keyed by a query's exact
#   bytes (case as sent, extra flag bits) besides its canonical key: a case-randomising client
#   fills at most ~a fifth of the budget with them (~400 B each), not all of it
DNS_VIEW_CACHE_MAX = 65_536  # client address -> view memo entries
DNS_STATIC_ANSWER_VALID = 3600.0  # s; an answer no cached record went into (REFUSED, the
#   configured zones) stays pre-rendered this long; policy and store changes drop it sooner
DNS_ONDEMAND_TIMEOUT = 0.9  # s; cache misses answer inside 1 s (CoreDNS waits 2 s per attempt)
DNS_BROWSE_GATHER = 0.35  # s; after the first PTR answer, wait this long for more
DNS_MISS_MEMORY = 5.0  # s; a name that stayed silent is answered at once for this long
DNS_MISS_MEMORY_MAX = 10_000  # entries in that memory
DNS_PENDING_MAX = 1_000  # concurrent on-demand lookups; more are answered from cache as is
DNS_ANSWER_MIN_VALID = 1.0  # s; a pre-rendered answer is kept at least this long, even when a
#   record in it is about to expire (its remaining TTL, less the TTL we give, is shorter)
DNS_MAX_ADDITIONAL = 64  # records in a reply's additional section; the renderer drops them
#   first when space is short, this bounds the work for a name with a huge RRset
# SOA timers of the zones we serve (s): nobody transfers them (AXFR/IXFR are refused), so they
# only need to be plausible; RFC 1912 §2.2's usual values
DNS_SOA_REFRESH = 3600
DNS_SOA_RETRY = 600
DNS_SOA_EXPIRE = 86400

# --- chrony (issue 5) ----------------------------------------------------------------------
CHRONY_COMMAND_PORT = 323  # chronyd's default command (cmdmon) port
CHRONY_MAX_OFFSET = 0.010  # s; default |system time offset| bound: "time within 10 ms"
CHRONY_POLL_INTERVAL = 2.0  # s; poll + query deadline stay well inside the 10 s withdrawal budget
CHRONY_QUERY_TIMEOUT = 3.0  # s; a chronyc run taking longer is killed and counts as no answer
CHRONYC_REQUEST_TIMEOUT_MS = 300  # ms; chronyc's own wait per request (-m 'timeout'): chronyd
#   answers in well under a millisecond, two tries fit the query deadline many times over
CHRONYC_RETRIES = 1  # chronyc's retries per request (-m 'retries'); one lost datagram is no outage
CHRONY_RECOVER_POLLS = 2  # healthy polls in a row before a withdrawn server returns (no flapping)
CHRONY_MESSAGE_LINE_MAX = 120  # characters of a chronyc line quoted in an error (it may be junk)
CHRONY_MAX_SOURCES = 64  # sources per server kept for metrics (chrony.conf bounds it; we too)
NTP_PORT = 123
NTS_KE_PORT = 4460  # RFC 8915 NTS key establishment
OWN_RECORD_TTL = 120  # s; mDNS TTL of our NTP records: short, they follow chronyd's health

# --- mDNS responder (RFC 6762 §8) -------------------------------------------------------------
MDNS_PROBE_INTERVAL = 0.25  # s; three probes 250 ms apart
MDNS_PROBE_COUNT = 3
MDNS_PROBE_DEFER = 1.0  # s; lost a simultaneous-probe tie-break: probe again after this
MDNS_CONFLICT_WINDOW = 10.0  # s; 15 conflicts inside this window ...
MDNS_CONFLICT_LIMIT = 15
MDNS_CONFLICT_BACKOFF = 5.0  # s; ... and each further probe waits this long (§8.1)
# s; an announcement or lease name a device holds: we stand aside and probe again this often
# (one probe round a minute, never a rename storm; the name is ours within a minute of it going)
MDNS_STAND_ASIDE_RETRY = 60.0
MDNS_ANNOUNCE_COUNT = 3  # unsolicited announcements (at least two, §8.3)
MDNS_ANNOUNCE_FIRST_INTERVAL = 1.0  # s; then doubling
MDNS_MULTICAST_MIN_INTERVAL = 1.0  # s; a record is multicast at most once a second per link (§6)
MDNS_PROBE_DEFENSE_INTERVAL = 0.25  # s; ... except in answer to a probe
MDNS_SHARED_DELAY = (0.020, 0.120)  # s; random delay before answering with shared records (§6)
MDNS_TC_DELAY = (0.400, 0.500)  # s; delay when the query's known answers continue (TC bit)
MDNS_LEGACY_TTL = 10  # s; TTL cap in replies to legacy unicast queries (§6.7)
MDNS_RESPONDER_MAX_PENDING = 256  # delayed answers queued; more are dropped (and counted)

# --- reflector ---------------------------------------------------------------------------
REFLECT_DUP_WINDOW = 0.8  # s; the same record/question/packet is sent into a VLAN at most once
#   per this window (RFC 6762 §6 allows a record once per second per link; loops run in ms)
REFLECT_RATE = 1000.0  # packets/s per VLAN and direction (token bucket refill); avahi's default
REFLECT_BURST = 2000  # packets; token bucket depth per VLAN and direction
REFLECT_MARKS_MAX = 32_768  # record/question/packet marks per generation (two generations kept,
#   each at least REFLECT_DUP_WINDOW long; a full generation rotates early)
REFLECT_MEMO_MAX = 16_384  # memoised policy masks (VLAN, type, instance); cleared when full
REFLECT_TARGETS_MAX = 8_192  # learned SRV targets (VLAN, host); expired ones swept when full
REFLECT_INSTANCES_MAX = 16_384  # services remembered by VLAN (for known answers); swept, then
#   cleared when full
REFLECT_SERVICES_PER_HOST = 32  # services remembered per SRV target host; oldest dropped
REFLECT_TARGET_MIN_TTL = 10.0  # s; an SRV target is remembered at least this long
LINK_SOURCES_MAX = 4_096  # memoised on-link checks of source addresses per link; cleared when full
REFLECT_DEFAULT_MTU = 1500  # bytes; used when an interface's MTU cannot be read
ONESHOT_PENDING_MAX = 256  # one-shot (legacy unicast) queriers waiting for answers from other
#   VLANs, in all; more are refused (counted): a querier retries, a flood costs bounded memory
ONESHOT_WAIT = 3.0  # s; how long answers are relayed to a one-shot querier (dig, drill and
#   glibc wait 5 s per try; responders answer within 0.5 s, §6)
ONESHOT_REPLIES_MAX = 8  # unicast replies relayed to one one-shot querier (one per arriving
#   answer; most queriers take the first): bounds what one query can draw

# --- interfaces ----------------------------------------------------------------------------
IFACE_RESCAN_INTERVAL = 2.0  # s; interface changes (link flap, re-added VLAN) seen within this
NETLINK_RECV_BYTES = 65536  # bytes per read of the kernel's address dump (interfaces.py): the
#   kernel fills a read up to this and sends the rest in the next; its own dump pages are 32 KiB
NETLINK_DUMP_MAX = 64 * 1024 * 1024  # bytes of one address dump before it is refused as broken:
#   ~150 bytes an address, far beyond any router's (a loop reading forever cannot happen)

# --- HTTP surface ----------------------------------------------------------------------------
HTTP_MAX_CONNECTIONS = 64  # concurrent clients (Prometheus and an operator need a few); more are
#   closed at accept: 1,105 idle ones once took every descriptor and TCP DNS stopped accepting
HTTP_MAX_REQUEST_HEAD = 8192  # bytes of request line and headers; more is refused (431)
HTTP_REQUEST_TIMEOUT = 10.0  # s to send the request head; slow clients are dropped (408)
HTTP_WRITE_TIMEOUT = 10.0  # s for a client to take its response; one that does not read is cut
HTTP_MAX_QUERY_FIELDS = 16  # query-string fields; the API reads three at most
HTTP_MAX_RECORDS_LISTED = 5000  # records in /api/records; a diagnostics page stays small on a
#   busy network (the metrics give the totals)
HTTP_SHUTDOWN_TIMEOUT = 2.0  # s that requests in flight get to finish at shutdown (a page's
#   live stream is ended first); then they are cancelled
HTTP_TOKEN_MAX_BYTES = 4096  # bytes of http.token_file; a bearer token is a line, not a document
CLI_HTTP_TIMEOUT = 10.0  # s for `browse` / `explain --live` to get the running gateway's answer
HTTP_TOKEN_MIN_CHARS = 16  # characters of a bearer token; shorter ones are guessable
WEB_PUSH_INTERVAL = 1.0  # s between the live page's checks for news; a change reaches an open
#   page within this (one state is built per interval, however many pages are open)
WEB_MAX_SERVICES = 500  # service instances per VLAN on the page and in /api/services; a busy
#   network must not make a page of megabytes (the totals are shown)
WEB_TOP_N = 10  # entries in each "top advertisers" and "top queried names" list
EVENTS_MAX = 200  # recent events kept (announced, goodbye, expired, refused, dropped, loops)
EVENTS_POLL_INTERVAL = 1.0  # s between reads of the drop and refusal counters for new events
QUERY_NAMES_MAX = 256  # distinct queried names counted per VLAN; further new names are counted
#   as "other" (a client asking random names cannot grow it)
FD_RESERVE = 128  # descriptors beyond the TCP DNS and HTTP caps (mDNS and DNS sockets per VLAN
#   and listener, chronyc pipes, policy files); start-up warns when the limit leaves less
FD_LIMIT_UNBOUNDED = 1_048_576  # descriptors asked for when the hard limit is unlimited (Linux's
#   default fs.nr_open: setrlimit refuses more)

# --- policies (the per-file and per-resource limits are in bridge/policy/model.py) -------------
POLICY_MAX_TOTAL_BYTES = 2 << 20  # bytes over the whole directory, checked before parsing; a
#   1 MB file once kept the parser busy 9 s (now off the event loop, still CPU)
POLICY_MAX_DOCUMENTS = 4_200  # YAML documents over the directory, counted ('---' lines) before
#   parsing: MAX_POLICIES (4,096) and room for CRDs and empty documents
POLICY_CYAML_DEPTH_BOUND = 2_000  # nesting bound ('[' and '{' plus twice the longest line) up to
#   which libyaml's parser is used; its composer recurses in C and crashes the process near
#   20,000 levels, so deeper-looking files go to the pure-Python parser (RecursionError-safe)

# --- wide-area publishing (issue 16, bridge/widearea) ---------------------------------------
WIDEAREA_DEFAULT_TTL = 120  # s; published records' TTL: mDNS's own for host records (RFC 6762
#   §10), so a record the gateway failed to delete misleads resolvers for two minutes at most
WIDEAREA_RECONCILE_INTERVAL = 600.0  # s; between TSIG zone transfers that repair the zone (a
#   crash, an edit by hand); one AXFR of a few thousand records every 10 min costs the server little
WIDEAREA_BATCH_DELAY = 0.2  # s; changes gathered before an UPDATE: an announcement's records
#   (PTR, SRV, TXT, A, AAAA) arrive in one packet or a few within milliseconds
WIDEAREA_MIN_INTERVAL = 0.05  # s between UPDATEs (20/s): the server's journal and its
#   NOTIFYs to secondaries are not flooded by a flapping device
WIDEAREA_UPDATE_MAX_RECORDS = 100  # records changed in one UPDATE: ~100 B each, a message stays
#   far under 64 KB, and rendering and signing one holds the event loop ~20-50 ms, not 0.2 s
WIDEAREA_MAX_MESSAGE = 65_535  # bytes; the largest DNS message (over TCP), our EDNS payload size
WIDEAREA_UDP_MAX_RECORDS = 8  # records; an UPDATE changing more goes over TCP: 8 records of
#   ~100 B and the TSIG stay under 1,232 B (the DNS flag day's safe UDP size)
WIDEAREA_FIRST_RECONCILE = 5.0  # s after start-up: the first zone transfer waits until the
#   browser has heard the network's answers, so a restart does not delete what comes back
WIDEAREA_TIMEOUT = 5.0  # s; an UPDATE or the start of a zone transfer without an answer
WIDEAREA_AXFR_TIMEOUT = 60.0  # s; a whole zone transfer
WIDEAREA_RETRY_MIN = 1.0  # s; the first retry after a timeout or SERVFAIL, doubling ...
WIDEAREA_RETRY_MAX = 60.0  # s; ... up to this (a server down for an hour is asked once a minute)
WIDEAREA_CONFIG_RETRY = 300.0  # s; retry after REFUSED/NOTAUTH/BADKEY/BADSIG/BADTIME: a fix
#   of the server or the key is picked up within 5 min without hammering the server meanwhile
WIDEAREA_CHUNK = 25  # service instances computed per event-loop turn: 0.2-0.35 ms of CPU each
#   (instance_records and the contribution count, measured with time.thread_time), so 1,000
#   learned at once hold the loop ~5-9 ms at a time (100 per turn held it 30-45 ms)
WIDEAREA_COMPARE_CHUNK = 1_000  # pending records compared per event-loop turn before a flush:
#   1.4-1.7 us of CPU each (measured), so 40,000 pending (10,000 services) are not one 60 ms turn
WIDEAREA_MAX_INSTANCES = 100_000  # instances followed in all; beyond, new ones are counted, not
#   published (the store's own bound, STORE_MAX_RECORDS, keeps this far away in practice)
WIDEAREA_KEY_FILE_MAX_BYTES = 65_536  # bytes; a key file is ~100 B, a wrong path must not be read
CONFIG_MIN_WIDEAREA_TTL = 1  # s; wide_area.ttl
CONFIG_MIN_RECONCILE_INTERVAL = 10.0  # s; wide_area.reconcile_interval: a transfer a second
#   would be the server's load, not a repair

# --- configuration -------------------------------------------------------------------------
CONFIG_MAX_BYTES = 1_048_576  # bytes read of --config at most; a config is a few KB, a wrong path
#   (a device, a log) must not be read whole
CONFIG_MAX_DEPTH = 32  # YAML nesting levels; the reference config uses 4, PyYAML recurses per level
CONFIG_MAX_PROBLEMS = 50  # problem lines in one error; the rest are counted ("... and N more")
CONFIG_MESSAGE_VALUE_MAX = 60  # characters of a value quoted in a message (an alias bomb once
#   built a 226 MB message)
VLAN_SUBNET_MIN_PREFIX_V4 = 8  # bits; a shorter VLAN subnet (0.0.0.0/0) would put every client in
VLAN_SUBNET_MIN_PREFIX_V6 = 16  # the VLAN's view and make every address plausible on it
IFNAMSIZ_MAX = 15  # characters of an interface name: Linux's IFNAMSIZ (16) less the NUL
# bounds of configurable values: beyond them a value is a typo, not a choice
CONFIG_MIN_RECORDS = 100  # cache.max_records: fewer cannot hold one busy VLAN's services
CONFIG_MAX_RECORDS = 10_000_000  # ... and more would not fit a router's memory (~1 KB a record)
CONFIG_MAX_REFLECT_RATE = 1_000_000.0  # packets/s; reflector.rate (100x what one core reflects)
CONFIG_MAX_REFLECT_BURST = 1_000_000  # packets; reflector.burst
CONFIG_MAX_TTL = 86400  # s; dns.max_ttl and dns.negative_ttl: a day (mDNS data changes faster)
CONFIG_MAX_ONDEMAND_TIMEOUT = 1.9  # s; dns.ondemand_timeout stays under CoreDNS's 2 s per attempt
CONFIG_MAX_RRL_RATE = 1_000_000  # responses/s; dns.rate_limit.responses_per_second (a sanity bound)
CONFIG_MAX_RRL_WINDOW = 3600.0  # s; dns.rate_limit.window: an hour (BIND allows 1..3600)
CONFIG_MAX_RRL_SLIP = 10  # dns.rate_limit.slip (BIND allows 0..10)
CONFIG_MIN_CHRONY_OFFSET = 1e-6  # s; chrony.max_offset_seconds: below a microsecond no clock holds
CONFIG_MAX_CHRONY_OFFSET = 10.0  # s; ... and a bound above 10 s would advertise a broken clock

# --- CoreDNS in front (mdns-gateway corefile) ----------------------------------------------
COREDNS_PORT = 53  # the port LAN clients ask CoreDNS on (the router's address from DHCP)
COREFILE_CACHE_SUCCESS = 4096  # packets in CoreDNS's positive cache per block: a VLAN's browse,
#   service and host answers; CoreDNS rounds to its 256 shards
COREFILE_CACHE_DENIAL = 1024  # packets in its negative cache per block: names no device has
#   announced, asked again within their negative TTL

# --- policies ------------------------------------------------------------------------------
POLICY_GLOB_CACHE_MAX = 1024  # compiled instance-glob lists kept; policies share a few lists and a
#   reload recompiles only new ones

# --- policies from the Kubernetes API (bridge/policy/kubesource.py) -----------------------
KUBE_BACKOFF_MIN = 0.5  # s; first retry after the API failed (times a jitter in [0.5, 1))
KUBE_BACKOFF_MAX = 30.0  # s; retries never wait longer: a router comes back within half a minute
#   of its API server, and 2 s of jitter-spread load per gateway is nothing to the server
KUBE_WATCH_TIMEOUT = 300  # s; timeoutSeconds asked of each watch (the server ends it then, and
#   the gateway resumes from the last version); jittered down by up to a fifth, as client-go does
KUBE_WATCH_IDLE = 60.0  # s beyond the watch timeout without a byte: the connection is dead
#   (a router rebooted under a half-open TCP connection); resumed from the last version
KUBE_REQUEST_TIMEOUT = 30.0  # s for a list page, a status patch or an event
KUBE_LIST_PAGE = 250  # objects a list page asks for (limit=, then continue=)
KUBE_MAX_LIST_BYTES = 64 << 20  # bytes of one list page read at most; 250 policies of the largest
#   size the CRD allows are far less, so more is a wrong server
KUBE_MAX_EVENT_BYTES = 3 << 20  # bytes of one watch event line; etcd stores objects of at most
#   1.5 MiB, so a longer line is no event (the watch is resumed)
KUBE_MAX_OBJECTS = 8192  # objects tracked; twice the policies an engine takes (the rest rejected),
#   more are counted and ignored
KUBE_STATUS_MESSAGE_MAX = 1024  # characters of a condition message (every problem, cut there)
KUBE_STATUS_ATTEMPTS = 5  # status patches of one object refused with 409 Conflict before waiting
#   for the next change
KUBE_ERROR_BODY_MAX = 4096  # bytes of an error response read for its message

# --- DHCP lease host names ------------------------------------------------------------------
DHCP_POLL_INTERVAL = 1.0  # s; lease files are stat()ed this often: a lease shows in DNS within it
# bytes read of one lease file: a Kea memfile appends a row per renewal until its hourly cleanup
# (~150 bytes a row: 200,000 rows); a larger file is refused, its last leases stay in force
DHCP_MAX_FILE_BYTES = 32 << 20
DHCP_MAX_HOSTS = 8192  # lease host names published at once: bounds the store's pins and sync

# --- logging -------------------------------------------------------------------------------
LOG_RATE_LIMIT_INTERVAL = 10.0  # s; a repeated warning (same key) is logged at most this often
LOG_RATE_LIMIT_KEYS_MAX = 4096  # distinct rate-limit keys remembered (keys include peer
#   addresses); the least recently logged is forgotten first

# --- process -------------------------------------------------------------------------------
# CPython's collector generations (default 700, 10, 10). With the memory tick's freeze, the young
# generation holds a quarter second of allocations at most: ~100,000 while a flood of new
# services fills the store, so none is collected (memory.py says why that is safe)
GC_THRESHOLDS = (300_000, 50, 100)
GC_FULL_INTERVAL = 600.0  # s; a full collection (cycles) this often; see memory.py
MEMORY_INTERVAL = 0.25  # s; the memory tick: freeze the collector's young objects, malloc_trim
MEMORY_TRIM_RECORDS = 1000  # records added or removed since the last trim that call for one
MEMORY_TRIM_ANSWER_BYTES = 1 << 20  # B; pre-rendered answers' growth or shrinking that calls
#   for one (a quarter of DNS_ANSWER_CACHE_BYTES: at most a few trims while the cache fills)

# interest-driven refresh (bridge/mdns/interest.py, RFC 6762 §5.2 "if still interested")
MDNS_INTEREST_MAX = 20_000  # (name, type) interests remembered; beyond, least recently wanted go
MDNS_INTEREST_MIN_WINDOW = 600.0  # s; an interest lasts the record's TTL, and at least this
MDNS_QUERY_GATHER_WINDOW = 2.0  # s; a query going out also carries refreshes due this soon (the
# store moves a popped record to its next refresh point, 5 % of the TTL later: kept under 5 % of
# 120 s, the host records' TTL, so a record's own next point is not pulled in too)
MDNS_DUPLICATE_WINDOW = 1.0  # s; RFC 6762 §7.3: a question another querier just asked is not sent
MDNS_HEARD_MAX = 5_000  # questions heard from other queriers remembered for §7.3; cleared when full
MDNS_FAMILY_FALLBACK = 1.0  # s; a refresh asked over one family (mdns/families.py) with no answer
# by then is asked over the other: past a responder's §6 delays (20-120 ms, TC 400-500 ms)
MDNS_FAMILY_PENDING_MAX = 5_000  # one-family questions awaiting their answer; beyond, both families
