// suture-loadgen: an open-loop load generator that times every request.
//
// Problem. A live patch (or a restart) stalls a server for some time P. A
// closed-loop client (redis-benchmark, memcaslap) sends its next request only
// after the previous reply, so during a stall it simply stops asking: only about
// one request per connection sees the stall, and the percentiles hide it
// (coordinated omission). To charge a stall to every request that a real,
// independent user population would have sent during it, the sending schedule
// must not depend on the replies.
//
// Approach. C connections ("streams") together send R requests a second. Stream
// c sends its k-th request at the intended time t0 + (c + k*C)/R, whether or not
// earlier replies have come back: when it is behind, requests are pipelined on
// the connection. A request's latency is measured from its intended send time
// to the arrival of its reply, so a request that had to wait in our own queue,
// in a socket buffer or in a stalled server is charged all of that wait. Every
// request gets a record (intended time, latency, status), written to a binary
// file at the end; the driver (run.py) computes windows, percentiles and plots.
//
// Failures count, they are never retried: an error reply (Redis "-ERR",
// "-LOADING"; memcached "ERROR", "SERVER_ERROR") is `error`; a request sent on a
// connection that then closed or reset is `lost`; a request whose intended time
// passed while its connection was down (refused, backing off) is `dropped`;
// a request still unanswered after the grace period is `unanswered`.
//
// Which code answered. With --mark TEXT, a reply that contains TEXT sets bit 7
// of its record's `op` (kMarked). A live patch that changes one reply (run.py's
// memcached patch makes `version` say so) then shows, request by request, which
// version of the code answered: when the switch happened on each connection,
// and that no connection went back to the old code after it.
// A connection that goes down is retried after 1 ms, doubling to 4 ms, so the
// window in which a server refuses connections is seen to within a few ms.
//
// Marking an instant. SIGUSR1 records "now" as an event (read through a
// signalfd in the first worker's epoll set, so it is timestamped within the
// loop's wake-up latency). The summary also gives t0 on CLOCK_MONOTONIC, which
// the driver shares, so the driver can place its own timestamps too.
//
// Own overhead. Workers sleep in epoll_pwait2 with a nanosecond timeout and a
// 1 ns timer slack until the next intended send, and batch all requests due at
// a wake-up into one write per connection. The summary reports the send lag
// (actual write minus intended time) of the generator itself: max and how many
// requests it sent more than 100 µs late. At most one worker thread per core.
//
// Rejected: one timer per request (too many syscalls at 20k/s); busy-polling
// (steals a core from the server on a 2-core machine); dropping requests while
// a connection is merely slow (that would hide exactly the stalls we measure).
//
// Output file: an array of `Record` (24 bytes, little-endian, see below), per
// worker in send order.
// Summary: one JSON object on stdout.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

namespace {

enum class Protocol : uint8_t { redis, memcache };
enum class Op : uint8_t { get = 0, set = 1, ping = 2 };
enum class Status : uint8_t { ok = 0, error = 1, lost = 2, dropped = 3, unanswered = 4 };
constexpr uint8_t kMarked = 0x80;  // in Record::op: the reply contained --mark

// One request. Times are nanoseconds relative to t0 (CLOCK_MONOTONIC).
struct Record {
  int64_t intended_ns;
  int64_t latency_ns;  // reply (or failure seen) minus intended; -1 when dropped
  uint8_t status;      // Status
  uint8_t op;          // Op, | kMarked when the reply contained --mark
  uint16_t conn;
  uint32_t send_lag_us;  // when it was written minus intended: the generator's own delay
};
static_assert(sizeof(Record) == 24);

struct Options {
  std::string host = "127.0.0.1";
  uint16_t port = 6379;
  Protocol protocol = Protocol::redis;
  unsigned connections = 8;
  unsigned threads = 1;
  double rate = 20000;
  double duration_s = 10;
  double grace_s = 2;
  uint32_t keys = 1000000;
  unsigned value_size = 32;
  unsigned get_pct = 80, set_pct = 15;  // the rest is PING (memcached: "version")
  uint64_t seed = 1;
  std::string out;
  std::string mark;
  int cpu = -1;
};

int64_t mono_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

[[noreturn]] void die(const std::string& what) {
  fmt::print(stderr, "suture-loadgen: {}\n", what);
  std::exit(2);
}

uint64_t xorshift(uint64_t& s) {
  s ^= s << 13;
  s ^= s >> 7;
  s ^= s << 17;
  return s;
}

// Requests, encoded once per call into the connection's output buffer. SET
// writes "value:<key>" padded with NULs to value_size: exactly what Redis's
// DEBUG POPULATE stores, so the data set is unchanged by the load and a
// DEBUG DIGEST taken before a run still matches after it.
void encode(std::string& out, Protocol p, Op op, uint32_t key, unsigned value_size) {
  char k[24], v[24];
  int klen = fmt::format_to_n(k, sizeof k, "key:{}", key).size;
  int vtext = fmt::format_to_n(v, sizeof v, "value:{}", key).size;
  auto value = [&] {
    out.append(v, std::min<unsigned>(vtext, value_size));
    if (value_size > unsigned(vtext)) out.append(value_size - vtext, '\0');
  };
  if (p == Protocol::redis) {
    switch (op) {
    case Op::get: fmt::format_to(std::back_inserter(out), "*2\r\n$3\r\nGET\r\n${}\r\n", klen); break;
    case Op::set: fmt::format_to(std::back_inserter(out), "*3\r\n$3\r\nSET\r\n${}\r\n", klen); break;
    case Op::ping: out += "*1\r\n$4\r\nPING\r\n"; return;
    }
    out.append(k, klen);
    out += "\r\n";
    if (op == Op::set) {
      fmt::format_to(std::back_inserter(out), "${}\r\n", value_size);
      value();
      out += "\r\n";
    }
    return;
  }
  switch (op) {
  case Op::get: out += "get "; out.append(k, klen); out += "\r\n"; return;
  case Op::set:
    out += "set ";
    out.append(k, klen);
    fmt::format_to(std::back_inserter(out), " 0 0 {}\r\n", value_size);
    value();
    out += "\r\n";
    return;
  case Op::ping: out += "version\r\n"; return;
  }
}

enum class Parse { incomplete, ok, error, garbage };
struct Reply {
  Parse kind;
  size_t used = 0;
};

std::optional<size_t> line_end(std::string_view b, size_t from = 0) {
  auto i = b.find("\r\n", from);
  if (i == std::string_view::npos) return std::nullopt;
  return i;
}

bool parse_int(std::string_view s, long& v) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size();
}

// One RESP2 reply of the kinds our requests produce (status, error, integer, bulk).
Reply parse_redis(std::string_view b) {
  auto e = line_end(b);
  if (!e) return {Parse::incomplete};
  switch (b[0]) {
  case '+': case ':': return {Parse::ok, *e + 2};
  case '-': return {Parse::error, *e + 2};
  case '$': {
    long n;
    if (!parse_int(b.substr(1, *e - 1), n)) return {Parse::garbage};
    if (n < 0) return {Parse::ok, *e + 2};
    size_t need = *e + 2 + size_t(n) + 2;
    if (b.size() < need) return {Parse::incomplete};
    return {Parse::ok, need};
  }
  default: return {Parse::garbage};
  }
}

// One memcached text-protocol reply to get / set / version.
Reply parse_memcache(std::string_view b) {
  auto e = line_end(b);
  if (!e) return {Parse::incomplete};
  std::string_view line = b.substr(0, *e);
  if (line.starts_with("VALUE ")) {
    // VALUE <key> <flags> <bytes>\r\n<data>\r\nEND\r\n
    auto sp = line.rfind(' ');
    long n;
    if (!parse_int(line.substr(sp + 1), n) || n < 0) return {Parse::garbage};
    size_t end_at = *e + 2 + size_t(n) + 2;
    if (b.size() < end_at + 5) return {Parse::incomplete};
    if (b.substr(end_at, 5) != "END\r\n") return {Parse::garbage};
    return {Parse::ok, end_at + 5};
  }
  if (line == "END" || line == "STORED" || line == "NOT_STORED" || line.starts_with("VERSION "))
    return {Parse::ok, *e + 2};
  if (line == "ERROR" || line.starts_with("CLIENT_ERROR") || line.starts_with("SERVER_ERROR"))
    return {Parse::error, *e + 2};
  return {Parse::garbage};
}

enum class ConnState { down, connecting, up };

struct Conn {
  unsigned stream;  // global stream number, 0..C-1
  uint64_t next_k = 0;
  int fd = -1;
  ConnState state = ConnState::down;
  int64_t retry_at = 0;
  int64_t backoff = 1'000'000;
  bool want_out = false;
  std::string out;
  size_t out_off = 0;
  std::string in;
  std::deque<uint32_t> pending;  // record indices, in send order
};

struct Stats {
  uint64_t connects = 0, connect_failures = 0, disconnects = 0;
  int64_t max_send_lag = 0;
  uint64_t late_sends = 0;  // sent more than 100 µs after the intended time
};

// Everything one worker thread owns: its connections, its records, its epoll set.
struct Worker {
  const Options* opt;
  int64_t t0;
  int64_t end_ns;  // no request is intended at or after this
  int ep = -1;
  int sigfd = -1;  // first worker only
  sockaddr_in addr{};
  std::vector<Conn> conns;
  std::vector<Record> records;
  std::vector<int64_t> events;
  Stats stats;
  uint64_t rng;
};

int64_t intended(const Options& o, const Conn& c, uint64_t k) {
  return int64_t((double(c.stream) + double(k) * o.connections) * 1e9 / o.rate);
}

void watch(Worker& w, size_t i, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = i;
  if (epoll_ctl(w.ep, EPOLL_CTL_MOD, w.conns[i].fd, &ev) != 0 &&
      epoll_ctl(w.ep, EPOLL_CTL_ADD, w.conns[i].fd, &ev) != 0)
    die(fmt::format("epoll_ctl: {}", strerror(errno)));
}

// Start a non-blocking connect; requests issued meanwhile wait in `out`.
void start_connect(Worker& w, size_t i, int64_t now) {
  Conn& c = w.conns[i];
  c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c.fd < 0) die(fmt::format("socket: {}", strerror(errno)));
  int one = 1;
  setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int r = connect(c.fd, reinterpret_cast<sockaddr*>(&w.addr), sizeof w.addr);
  if (r != 0 && errno != EINPROGRESS) {
    close(c.fd);
    c.fd = -1;
    c.state = ConnState::down;
    c.retry_at = now + c.backoff;
    c.backoff = std::min<int64_t>(c.backoff * 2, 4'000'000);
    ++w.stats.connect_failures;
    return;
  }
  c.state = r == 0 ? ConnState::up : ConnState::connecting;
  if (r == 0) {
    c.backoff = 1'000'000;
    ++w.stats.connects;
  }
  watch(w, i, EPOLLIN | EPOLLOUT | EPOLLRDHUP);
  c.want_out = true;
}

// The connection is gone: everything sent or queued on it failed.
void drop_conn(Worker& w, size_t i, int64_t now, bool was_connected) {
  Conn& c = w.conns[i];
  for (uint32_t r : c.pending) {
    w.records[r].status = uint8_t(Status::lost);
    w.records[r].latency_ns = now - w.records[r].intended_ns;
  }
  c.pending.clear();
  c.out.clear();
  c.out_off = 0;
  c.in.clear();
  if (c.fd >= 0) close(c.fd);  // also removes it from the epoll set
  c.fd = -1;
  c.state = ConnState::down;
  c.retry_at = now + c.backoff;
  c.backoff = std::min<int64_t>(c.backoff * 2, 4'000'000);
  ++(was_connected ? w.stats.disconnects : w.stats.connect_failures);
}

void flush(Worker& w, size_t i, int64_t now) {
  Conn& c = w.conns[i];
  if (c.state != ConnState::up) return;
  while (c.out_off < c.out.size()) {
    ssize_t n = send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
    if (n > 0) {
      c.out_off += size_t(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!c.want_out) watch(w, i, EPOLLIN | EPOLLOUT | EPOLLRDHUP);
      c.want_out = true;
      return;
    }
    drop_conn(w, i, now, true);
    return;
  }
  c.out.clear();
  c.out_off = 0;
  if (c.want_out) watch(w, i, EPOLLIN | EPOLLRDHUP);
  c.want_out = false;
}

void on_readable(Worker& w, size_t i, int64_t now) {
  Conn& c = w.conns[i];
  char buf[65536];
  for (;;) {
    ssize_t n = recv(c.fd, buf, sizeof buf, 0);
    if (n > 0) {
      c.in.append(buf, size_t(n));
      if (size_t(n) < sizeof buf) break;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    drop_conn(w, i, now, true);  // closed or reset
    return;
  }
  size_t off = 0;
  while (off < c.in.size()) {
    std::string_view b(c.in.data() + off, c.in.size() - off);
    Reply r = w.opt->protocol == Protocol::redis ? parse_redis(b) : parse_memcache(b);
    if (r.kind == Parse::incomplete) break;
    if (r.kind == Parse::garbage || c.pending.empty()) {
      std::string shown(b.substr(0, std::min<size_t>(b.size(), 40)));
      for (char& ch : shown)
        if (ch < 32 || ch > 126) ch = '.';
      fmt::print(stderr, "suture-loadgen: connection {}: unexpected reply \"{}\"\n", c.stream, shown);
      drop_conn(w, i, now, true);
      return;
    }
    Record& rec = w.records[c.pending.front()];
    c.pending.pop_front();
    rec.latency_ns = now - rec.intended_ns;
    rec.status = uint8_t(r.kind == Parse::ok ? Status::ok : Status::error);
    if (!w.opt->mark.empty() && b.substr(0, r.used).find(w.opt->mark) != std::string_view::npos) rec.op |= kMarked;
    off += r.used;
  }
  c.in.erase(0, off);
}

void on_connect_done(Worker& w, size_t i, int64_t now) {
  Conn& c = w.conns[i];
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) {
    drop_conn(w, i, now, false);
    return;
  }
  c.state = ConnState::up;
  c.backoff = 1'000'000;
  ++w.stats.connects;
}

// Issue every request of every stream whose intended time has come.
void issue_due(Worker& w, int64_t now) {
  const Options& o = *w.opt;
  for (size_t i = 0; i < w.conns.size(); ++i) {
    Conn& c = w.conns[i];
    if (c.state == ConnState::down && now >= c.retry_at) start_connect(w, i, now);
    for (;;) {
      int64_t t = intended(o, c, c.next_k);
      if (t > now || t >= w.end_ns) break;
      ++c.next_k;
      uint64_t r = xorshift(w.rng);
      uint32_t key = uint32_t((r >> 8) % o.keys);
      unsigned pct = unsigned(r % 100);
      Op op = pct < o.get_pct ? Op::get : pct < o.get_pct + o.set_pct ? Op::set : Op::ping;
      int64_t lag = now - t;
      w.records.push_back({t, -1, uint8_t(Status::dropped), uint8_t(op), uint16_t(c.stream),
                           uint32_t(std::min<int64_t>(lag / 1000, UINT32_MAX))});
      if (c.state == ConnState::down) continue;  // nowhere to send it: dropped
      encode(c.out, o.protocol, op, key, o.value_size);
      c.pending.push_back(uint32_t(w.records.size() - 1));
      w.stats.max_send_lag = std::max(w.stats.max_send_lag, lag);
      if (lag > 100'000) ++w.stats.late_sends;
    }
    flush(w, i, now);
  }
}

int64_t next_wake(const Worker& w) {
  int64_t wake = INT64_MAX;
  for (const Conn& c : w.conns) {
    int64_t t = intended(*w.opt, c, c.next_k);
    if (t < w.end_ns) wake = std::min(wake, t);
    if (c.state == ConnState::down) wake = std::min(wake, c.retry_at);
  }
  return wake;
}

bool anything_pending(const Worker& w) {
  return std::any_of(w.conns.begin(), w.conns.end(), [](const Conn& c) { return !c.pending.empty(); });
}

void run_worker(Worker& w) {
  prctl(PR_SET_TIMERSLACK, 1UL);
  if (w.opt->cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(w.opt->cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
  }
  const int64_t grace_end = w.end_ns + int64_t(w.opt->grace_s * 1e9);
  epoll_event evs[64];
  for (;;) {
    int64_t now = mono_ns() - w.t0;
    if (now >= w.end_ns && (!anything_pending(w) || now >= grace_end)) break;
    int64_t wake = now >= w.end_ns ? grace_end : std::min(next_wake(w), grace_end);
    int64_t wait = std::clamp<int64_t>(wake - now, 0, 10'000'000);
    timespec ts{wait / 1'000'000'000, wait % 1'000'000'000};
    int n = epoll_pwait2(w.ep, evs, 64, &ts, nullptr);
    if (n < 0 && errno != EINTR) die(fmt::format("epoll_pwait2: {}", strerror(errno)));
    now = mono_ns() - w.t0;
    for (int e = 0; e < n; ++e) {
      if (evs[e].data.u64 == UINT64_MAX) {
        signalfd_siginfo si;
        while (read(w.sigfd, &si, sizeof si) == sizeof si) w.events.push_back(now);
        continue;
      }
      size_t i = evs[e].data.u64;
      Conn& c = w.conns[i];
      if (c.fd < 0) continue;
      if (c.state == ConnState::connecting) {
        if (evs[e].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_connect_done(w, i, now);
        continue;
      }
      if (evs[e].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) on_readable(w, i, now);
      if (c.fd >= 0 && (evs[e].events & EPOLLOUT)) flush(w, i, now);
    }
    issue_due(w, now);
  }
  int64_t now = mono_ns() - w.t0;
  for (Conn& c : w.conns) {
    for (uint32_t r : c.pending) {
      w.records[r].status = uint8_t(Status::unanswered);
      w.records[r].latency_ns = now - w.records[r].intended_ns;
    }
    if (c.fd >= 0) close(c.fd);
  }
}

void usage() {
  fmt::print(stderr, R"(usage: suture-loadgen --out FILE [options]
  --host H --port P          server (127.0.0.1:6379)
  --protocol redis|memcache  request encoding (redis)
  --connections C            streams / connections (8)
  --threads T                worker threads, at most one per core (1)
  --rate R                   total intended requests per second (20000)
  --duration D               seconds of load (10)
  --grace G                  seconds to wait for late replies after D (2)
  --keys N                   keys key:0..key:N-1 (1000000)
  --value-size B             SET value size, DEBUG POPULATE's format (32)
  --mix GET:SET              percent of GET and SET; the rest is PING/version (80:15)
  --seed S --cpu N           random seed; pin the workers to CPU N
  --mark TEXT                flag replies containing TEXT (bit 7 of the record's op)
Prints "ready T0_MONO_NS" when connected, then one JSON summary line. SIGUSR1 marks an event.
)");
  std::exit(2);
}

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) usage();
      return argv[++i];
    };
    if (a == "--host") o.host = val();
    else if (a == "--port") o.port = uint16_t(std::stoul(val()));
    else if (a == "--protocol") {
      std::string p = val();
      if (p == "redis") o.protocol = Protocol::redis;
      else if (p == "memcache") o.protocol = Protocol::memcache;
      else usage();
    } else if (a == "--connections") o.connections = unsigned(std::stoul(val()));
    else if (a == "--threads") o.threads = unsigned(std::stoul(val()));
    else if (a == "--rate") o.rate = std::stod(val());
    else if (a == "--duration") o.duration_s = std::stod(val());
    else if (a == "--grace") o.grace_s = std::stod(val());
    else if (a == "--keys") o.keys = uint32_t(std::stoul(val()));
    else if (a == "--value-size") o.value_size = unsigned(std::stoul(val()));
    else if (a == "--mix") {
      std::string m = val();
      if (std::sscanf(m.c_str(), "%u:%u", &o.get_pct, &o.set_pct) != 2 || o.get_pct + o.set_pct > 100) usage();
    } else if (a == "--seed") o.seed = std::stoull(val());
    else if (a == "--cpu") o.cpu = std::stoi(val());
    else if (a == "--out") o.out = val();
    else if (a == "--mark") o.mark = val();
    else usage();
  }
  unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  if (o.out.empty() || o.connections == 0 || o.connections > 65535 || o.rate <= 0 || o.keys == 0) usage();
  o.threads = std::clamp(o.threads, 1u, std::min(cores, o.connections));
  if (o.duration_s <= 0 || o.duration_s > 3600) die("--duration must be in (0, 3600] seconds");
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt = parse_args(argc, argv);

  // SIGUSR1 is blocked in every thread and read through a signalfd by worker 0.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);

  std::vector<Worker> workers(opt.threads);
  size_t per_thread = size_t(opt.rate * opt.duration_s / opt.threads * 1.02) + opt.connections + 16;
  for (unsigned t = 0; t < opt.threads; ++t) {
    Worker& w = workers[t];
    w.opt = &opt;
    w.rng = opt.seed * 0x9E3779B97F4A7C15ULL + t + 1;
    w.ep = epoll_create1(EPOLL_CLOEXEC);
    w.addr.sin_family = AF_INET;
    w.addr.sin_port = htons(opt.port);
    if (inet_pton(AF_INET, opt.host.c_str(), &w.addr.sin_addr) != 1) die("--host: not an IPv4 address");
    w.records.reserve(per_thread);
    for (unsigned c = t; c < opt.connections; c += opt.threads) w.conns.push_back(Conn{.stream = c});
  }
  workers[0].sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  epoll_event sev{};
  sev.events = EPOLLIN;
  sev.data.u64 = UINT64_MAX;
  epoll_ctl(workers[0].ep, EPOLL_CTL_ADD, workers[0].sigfd, &sev);

  // Connect everything before t0: a server that is down at the start is a setup error.
  for (Worker& w : workers)
    for (size_t i = 0; i < w.conns.size(); ++i) {
      start_connect(w, i, 0);
      if (w.conns[i].state == ConnState::down) die(fmt::format("cannot connect to {}:{}", opt.host, opt.port));
    }
  usleep(20'000);
  for (Worker& w : workers)
    for (size_t i = 0; i < w.conns.size(); ++i)
      if (w.conns[i].state == ConnState::connecting) on_connect_done(w, i, 0);
  for (Worker& w : workers)
    for (const Conn& c : w.conns)
      if (c.state != ConnState::up) die(fmt::format("cannot connect to {}:{}", opt.host, opt.port));

  int64_t t0 = mono_ns() + 50'000'000;
  for (Worker& w : workers) {
    w.t0 = t0;
    w.end_ns = int64_t(opt.duration_s * 1e9);
  }
  fmt::print("ready {}\n", t0);
  std::fflush(stdout);

  rusage ru0;
  getrusage(RUSAGE_SELF, &ru0);
  std::vector<std::thread> threads;
  for (unsigned t = 1; t < opt.threads; ++t) threads.emplace_back(run_worker, std::ref(workers[t]));
  run_worker(workers[0]);
  for (auto& th : threads) th.join();
  rusage ru1;
  getrusage(RUSAGE_SELF, &ru1);

  FILE* f = std::fopen(opt.out.c_str(), "wb");
  if (!f) die(fmt::format("{}: {}", opt.out, strerror(errno)));
  uint64_t counts[5] = {};
  Stats total;
  for (Worker& w : workers) {
    if (!w.records.empty() && std::fwrite(w.records.data(), sizeof(Record), w.records.size(), f) != w.records.size())
      die(fmt::format("{}: write failed", opt.out));
    for (const Record& r : w.records) ++counts[r.status];
    total.connects += w.stats.connects;
    total.connect_failures += w.stats.connect_failures;
    total.disconnects += w.stats.disconnects;
    total.late_sends += w.stats.late_sends;
    total.max_send_lag = std::max(total.max_send_lag, w.stats.max_send_lag);
  }
  if (std::fclose(f) != 0) die(fmt::format("{}: {}", opt.out, strerror(errno)));

  auto cpu_s = [](const timeval& a, const timeval& b) { return double(b.tv_sec - a.tv_sec) + (b.tv_usec - a.tv_usec) / 1e6; };
  nlohmann::json j;
  j["t0_mono_ns"] = t0;
  j["rate"] = opt.rate;
  j["connections"] = opt.connections;
  j["threads"] = opt.threads;
  j["duration_s"] = opt.duration_s;
  j["protocol"] = opt.protocol == Protocol::redis ? "redis" : "memcache";
  j["requests"] = counts[0] + counts[1] + counts[2] + counts[3] + counts[4];
  j["ok"] = counts[0];
  j["error"] = counts[1];
  j["lost"] = counts[2];
  j["dropped"] = counts[3];
  j["unanswered"] = counts[4];
  j["events_ns"] = workers[0].events;
  j["connects"] = total.connects;
  j["connect_failures"] = total.connect_failures;
  j["disconnects"] = total.disconnects;
  j["max_send_lag_us"] = total.max_send_lag / 1000.0;
  j["late_sends_over_100us"] = total.late_sends;
  j["cpu_user_s"] = cpu_s(ru0.ru_utime, ru1.ru_utime);
  j["cpu_sys_s"] = cpu_s(ru0.ru_stime, ru1.ru_stime);
  j["record_size"] = sizeof(Record);
  uint64_t marked = 0;
  for (const Worker& w : workers)
    for (const Record& r : w.records) marked += (r.op & kMarked) != 0;
  j["marked"] = marked;
  fmt::print("{}\n", j.dump());
  return 0;
}
