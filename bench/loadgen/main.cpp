// fanwire benchmark load generator.
//
// Holds N SSE or WebSocket subscribers to one topic on 127.0.0.1:PORT, publishes stamped
// messages over a keep-alive HTTP connection at a paced rate, and reports, per step,
// what every subscriber received: counts, misses, reordering, publish-to-receive latency
// percentiles and its own CPU time. It is driven by one command per line on stdin and
// answers each with one JSON line on stdout:
//
//   (on start)                          -> {"type":"ready", ...} once all clients connected
//   sync <timeout_s>                    -> {"type":"sync", ...} every client saw a marker
//   step <rate> <secs> <bytes> <drain> [give_up_ms]
//                                       -> {"type":"step", ...}; the step stops early
//                                          ("aborted") once a message is give_up_ms late
//   listen <rate> <secs> <bytes> <drain> [give_up_ms]
//                                       -> {"type":"listening"} at once, then {"type":"step",
//                                          ...}: a step whose messages another loadgen
//                                          publishes (same seqs: both ran the same steps
//                                          before); its `step` must start within 1 s
//   stall <n>                           -> {"type":"stalled", ...} n clients that never read
//   unstall <secs>                      -> {"type":"unstalled", ...} read them: closed yet?
//   flood <secs> <bytes> <http|batch|ws> <conns> <window> <batch>
//                                       -> {"type":"flood", ...} publish ingest: as fast
//                                          as acked, closed loop (flood.hpp)
//   status                              -> {"type":"status", ...}
//   quit
//
// It exits by itself after --max-seconds whatever happens.
#include <sys/eventfd.h>
#include <sys/resource.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>

#include "fleet.hpp"
#include "flood.hpp"
#include "json_out.hpp"
#include "publisher.hpp"

namespace {

struct Options {
    FleetOptions fleet;
    int clients = 1;
    int window = 256;
    int keys = 0;  // > 0: published payloads carry "k": seq % keys
    double connect_timeout = 60;
    double max_seconds = 900;
};

[[noreturn]] void usage() {
    std::fprintf(stderr,
                 "usage: loadgen --port P [--transport sse|ws] [--clients N] [--topic T]\n"
                 "               [--sse-path PATH] [--ws-path PATH] [--deflate 0|1]\n"
                 "               [--subscribe-extra ,\"FIELD\":VALUE] [--keys K]\n"
                 "               [--window W] [--connect-timeout S]\n"
                 "               [--max-seconds S]\n");
    std::exit(2);
}

Options parse_args(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string key = argv[i];
        if (i + 1 >= argc) usage();
        const std::string val = argv[++i];
        if (key == "--port") o.fleet.port = static_cast<uint16_t>(std::stoi(val));
        else if (key == "--transport") o.fleet.transport = val == "ws" ? Transport::Ws : Transport::Sse;
        else if (key == "--clients") o.clients = std::stoi(val);
        else if (key == "--topic") o.fleet.topic = val;
        else if (key == "--sse-path") o.fleet.sse_path = val;
        else if (key == "--ws-path") o.fleet.ws_path = val;
        else if (key == "--deflate") o.fleet.deflate = val == "1";
        else if (key == "--subscribe-extra") o.fleet.subscribe_extra = val;
        else if (key == "--keys") o.keys = std::stoi(val);
        else if (key == "--window") o.window = std::stoi(val);
        else if (key == "--connect-timeout") o.connect_timeout = std::stod(val);
        else if (key == "--max-seconds") o.max_seconds = std::stod(val);
        else usage();
    }
    if (o.fleet.port == 0) usage();
    return o;
}

void raise_fd_limit() {
    rlimit lim{};
    getrlimit(RLIMIT_NOFILE, &lim);
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
}

constexpr uint64_t kStdinKey = 1ull << 62;
constexpr uint64_t kPublisherKey = (1ull << 62) + 1;

class Session {
public:
    explicit Session(const Options& o)
        : opt_(o),
          fleet_(o.fleet),
          publisher_(o.fleet.port, o.fleet.topic, o.window),
          flood_(o.fleet.port, o.fleet.topic) {
        done_fd_ = eventfd(0, EFD_NONBLOCK);
        watch(0, kStdinKey);
        watch(done_fd_, kPublisherKey);
        publisher_.set_keys(o.keys);
        flood_.set_keys(o.keys);
        fleet_.add_clients(o.clients);
        started_ = mono_now();
    }

    int run() {
        epoll_event events[256];
        const double hard_stop = started_ + opt_.max_seconds;
        while (!quit_ && mono_now() < hard_stop) {
            const int n = epoll_wait(fleet_.epoll_fd(), events, 256, 20);
            for (int i = 0; i < n; ++i) dispatch(events[i]);
            advance();
        }
        stop_publisher();
        return 0;
    }

private:
    enum class Busy { Connect, Idle, Sync, Step, Flood };

    void watch(int fd, uint64_t key) {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = key;
        epoll_ctl(fleet_.epoll_fd(), EPOLL_CTL_ADD, fd, &ev);
    }

    void dispatch(const epoll_event& ev) {
        if (ev.data.u64 == kStdinKey) {
            read_commands();
        } else if (ev.data.u64 == kPublisherKey) {
            uint64_t v = 0;
            if (::read(done_fd_, &v, sizeof v) > 0) publisher_finished();
        } else {
            fleet_.on_event(ev.data.u64, ev.events);
        }
    }

    void read_commands() {
        char buf[4096];
        const ssize_t n = ::read(0, buf, sizeof buf);
        if (n <= 0) {  // the runner closed our stdin: finish what it asked for, then quit
            epoll_ctl(fleet_.epoll_fd(), EPOLL_CTL_DEL, 0, nullptr);
            stdin_ += "\nquit\n";
            return;
        }
        stdin_.append(buf, static_cast<size_t>(n));
    }

    // Moves the current command on, and starts the next queued one when idle.
    void advance() {
        if (busy_ == Busy::Connect) advance_connect();
        if (busy_ == Busy::Sync) advance_sync();
        if (busy_ == Busy::Step) advance_step();
        if (busy_ == Busy::Flood) advance_flood();
        size_t nl = 0;
        while (busy_ == Busy::Idle && !quit_ && (nl = stdin_.find('\n')) != std::string::npos) {
            const std::string line = stdin_.substr(0, nl);
            stdin_.erase(0, nl + 1);
            start_command(line);
        }
    }

    void start_command(const std::string& line) {
        std::istringstream in(line);
        std::string cmd;
        in >> cmd;
        if (cmd == "quit") {
            quit_ = true;
        } else if (cmd == "sync") {
            in >> sync_timeout_;
            start_sync();
        } else if (cmd == "step") {
            give_up_ms_ = 0;
            in >> plan_.rate >> step_secs_ >> plan_.payload_bytes >> drain_secs_ >> give_up_ms_;
            start_step();
        } else if (cmd == "listen") {
            give_up_ms_ = 0;
            in >> plan_.rate >> step_secs_ >> plan_.payload_bytes >> drain_secs_ >> give_up_ms_;
            start_listen();
        } else if (cmd == "flood") {
            std::string kind;
            flood_plan_ = FloodPlan{};
            in >> flood_plan_.seconds >> flood_plan_.payload_bytes >> kind >> flood_plan_.conns >>
                flood_plan_.window >> flood_plan_.batch;
            flood_plan_.kind = kind == "ws"      ? FloodKind::Ws
                               : kind == "batch" ? FloodKind::Batch
                                                 : FloodKind::Http;
            start_flood();
        } else if (cmd == "stall") {
            int n = 0;
            in >> n;
            emit(JsonOut().str("type", "stalled").num("opened", fleet_.add_stalled(n)));
        } else if (cmd == "unstall") {
            double seconds = 2.0;
            in >> seconds;
            const auto drained = fleet_.drain_stalled(seconds);
            emit(JsonOut()
                     .str("type", "unstalled")
                     .num("closed_by_server", drained.closed_by_server)
                     .num("bytes_read", drained.bytes));
        } else if (cmd == "status") {
            emit(JsonOut()
                     .str("type", "status")
                     .num("streaming", fleet_.streaming())
                     .num("closed", fleet_.closed()));
        } else if (!cmd.empty()) {
            emit(JsonOut().str("type", "error").str("message", "unknown command: " + cmd));
        }
    }

    void advance_connect() {
        fleet_.pump_connects();
        const bool timed_out = mono_now() - started_ > opt_.connect_timeout;
        if (!fleet_.connecting_done() && !timed_out) return;
        emit(JsonOut()
                 .str("type", "ready")
                 .num("clients", opt_.clients)
                 .num("streaming", fleet_.streaming())
                 .num("deflate", fleet_.deflated())
                 .num("failed", opt_.clients - fleet_.streaming())
                 .num("connect_s", mono_now() - started_));
        busy_ = Busy::Idle;
    }

    void start_sync() {
        busy_ = Busy::Sync;
        sync_started_ = mono_now();
        PublishPlan p;
        p.rate = 20;
        p.count = static_cast<int64_t>(sync_timeout_ * p.rate) + 1;
        p.payload_bytes = 64;
        p.sync_markers = true;
        launch(p);
    }

    void advance_sync() {
        const bool all = fleet_.synced() >= fleet_.streaming();
        if (all || mono_now() - sync_started_ > sync_timeout_) stop_.store(true);
        if (!publisher_done_) return;
        emit(JsonOut()
                 .str("type", "sync")
                 .num("synced", fleet_.synced())
                 .num("streaming", fleet_.streaming())
                 .num("sync_s", mono_now() - sync_started_));
        busy_ = Busy::Idle;
    }

    void start_step() {
        start_step_window();
        launch(plan_);
    }

    void start_step_window() {
        busy_ = Busy::Step;
        plan_.count = std::max<int64_t>(1, static_cast<int64_t>(plan_.rate * step_secs_ + 0.5));
        plan_.first_seq = next_seq_;
        plan_.sync_markers = false;
        next_seq_ += plan_.count;
        aborted_ = false;
        fleet_.begin_step({plan_.first_seq, plan_.count});
        streaming_at_start_ = fleet_.streaming();
        cpu_at_start_ = cpu_seconds(RUSAGE_SELF);
        step_started_ = mono_now();
    }

    // A step without publishing: another process's publisher feeds this one's clients.
    void start_listen() {
        stop_publisher();
        result_ = PublishResult{};
        listening_ = true;
        start_step_window();
        emit(JsonOut().str("type", "listening").num("first_seq", plan_.first_seq));
    }

    void advance_step() {
        if (give_up_ms_ > 0 && static_cast<double>(fleet_.latency().max()) > give_up_ms_ * 1e3) {
            aborted_ = true;
            stop_.store(true);
        }
        // A listener cannot see the publisher finish: it allows the publisher's step 1 s
        // to start after its own, then the window and the drain.
        if (!listening_ && !publisher_done_) return;
        const double last = listening_ ? step_started_ + 1.0 + step_secs_ : publish_finished_;
        const bool all_in = fleet_.complete_clients() >= fleet_.streaming();
        if (!all_in && !aborted_ && mono_now() < last + drain_secs_) return;
        emit(step_report());
        listening_ = false;
        busy_ = Busy::Idle;
    }

    // Publish ingest: every message a subscriber sees counts, in order or not (the
    // connections' messages interleave).
    void start_flood() {
        busy_ = Busy::Flood;
        flood_plan_.first_seq = next_seq_;
        next_seq_ += 1'000'000'000;
        fleet_.begin_step({flood_plan_.first_seq, 1'000'000'000});
        streaming_at_start_ = fleet_.streaming();
        cpu_at_start_ = cpu_seconds(RUSAGE_SELF);
        step_started_ = mono_now();
        stop_publisher();
        stop_.store(false);
        publisher_done_ = false;
        thread_ = std::thread([this] {
            flood_result_ = flood_.run(flood_plan_, stop_);
            const uint64_t one = 1;
            [[maybe_unused]] auto n = ::write(done_fd_, &one, sizeof one);
        });
    }

    void advance_flood() {
        if (!publisher_done_) return;
        // Give the subscribers a moment to read what is on its way (at most 2 s).
        int64_t seen = 0;
        for (const auto& c : fleet_.conns()) seen += c->stats.seen;
        if (seen < flood_result_.acked * fleet_.streaming() && mono_now() < publish_finished_ + 2)
            return;
        const FloodResult& r = flood_result_;
        Histogram& h = fleet_.latency();
        JsonOut lat;
        lat.num("p50", h.percentile(50) / 1e3).num("p99", h.percentile(99) / 1e3)
            .num("samples", h.count());
        emit(JsonOut()
                 .str("type", "flood")
                 .num("sent", r.sent)
                 .num("acked", r.acked)
                 .num("failed", r.failed)
                 .boolean("connection_lost", r.connection_lost)
                 .num("elapsed_s", r.elapsed_s)
                 .num("acked_per_s", r.elapsed_s > 0 ? static_cast<double>(r.acked) / r.elapsed_s : 0.0)
                 .num("clients", static_cast<int64_t>(fleet_.conns().size()))
                 .num("streaming_at_start", streaming_at_start_)
                 .num("disconnected", streaming_at_start_ - fleet_.streaming())
                 .num("delivered_total", seen)
                 .raw("latency_ms", lat.close())
                 .num("loadgen_s", cpu_seconds(RUSAGE_SELF) - cpu_at_start_)
                 .num("publisher_s", r.cpu_s)
                 .num("wall_s", mono_now() - step_started_));
        busy_ = Busy::Idle;
    }

    JsonOut step_report() {
        const PublishResult& r = result_;
        const double span = r.last_send - r.first_send;
        int64_t total = 0, missed = 0, ooo = 0, lo = INT64_MAX, hi = 0;
        std::vector<int64_t> per_client;
        for (const auto& c : fleet_.conns()) {
            const ClientStats& s = c->stats;
            per_client.push_back(s.received);
            total += s.received;
            missed += plan_.count - s.received;
            ooo += s.out_of_order;
            lo = std::min(lo, s.received);
            hi = std::max(hi, s.received);
        }
        Histogram& h = fleet_.latency();
        JsonOut lat;
        lat.num("p50", h.percentile(50) / 1e3).num("p90", h.percentile(90) / 1e3)
            .num("p99", h.percentile(99) / 1e3).num("max", static_cast<double>(h.max()) / 1e3)
            .num("samples", h.count());
        JsonOut cpu;
        cpu.num("loadgen_s", cpu_seconds(RUSAGE_SELF) - cpu_at_start_).num("publisher_s", r.cpu_s);
        std::string buckets = "[";
        h.for_each_bucket([&](uint64_t mid, uint64_t n) {
            if (buckets.size() > 1) buckets += ',';
            buckets += "[" + std::to_string(mid) + "," + std::to_string(n) + "]";
        });
        buckets += "]";
        return JsonOut()
            .str("type", "step")
            .boolean("listen_only", listening_)
            .num("first_seq", plan_.first_seq)
            .num("rate", plan_.rate)
            .num("duration_s", step_secs_)
            .num("payload_bytes", plan_.payload_bytes)
            .boolean("aborted", aborted_)
            .num("published", r.sent)
            .num("publish_ok", r.ok)
            .num("publish_failed", r.failed)
            .boolean("publish_connection_lost", r.connection_lost)
            .num("achieved_rate", r.sent > 1 && span > 0 ? (r.sent - 1) / span : plan_.rate)
            .num("clients", static_cast<int64_t>(fleet_.conns().size()))
            .num("streaming_at_start", streaming_at_start_)
            .num("disconnected", streaming_at_start_ - fleet_.streaming())
            .num("complete_clients", fleet_.complete_clients())
            .num("received_total", total)
            .num("received_min", lo == INT64_MAX ? 0 : lo)
            .num("received_max", hi)
            .num("missed_total", missed)
            .num("out_of_order_total", ooo)
            .raw("latency_ms", lat.close())
            .raw("cpu", cpu.close())
            .num("wall_s", mono_now() - step_started_)
            .array("per_client_received", per_client)
            .raw("latency_buckets_us", buckets);
    }

    void launch(const PublishPlan& plan) {
        stop_publisher();
        stop_.store(false);
        publisher_done_ = false;
        thread_ = std::thread([this, plan] {
            result_ = publisher_.run(plan, stop_);
            const uint64_t one = 1;
            [[maybe_unused]] auto n = ::write(done_fd_, &one, sizeof one);
        });
    }

    void publisher_finished() {
        if (thread_.joinable()) thread_.join();
        publisher_done_ = true;
        publish_finished_ = mono_now();
    }

    void stop_publisher() {
        stop_.store(true);
        if (thread_.joinable()) thread_.join();
    }

    static void emit(JsonOut out) {
        std::cout << out.close() << std::endl;  // endl: the runner waits for each line
    }

    Options opt_;
    Fleet fleet_;
    Publisher publisher_;
    Flood flood_;
    FloodPlan flood_plan_;
    FloodResult flood_result_;
    int done_fd_ = -1;
    std::string stdin_;
    Busy busy_ = Busy::Connect;
    bool quit_ = false;
    double started_ = 0;
    // publisher thread
    std::thread thread_;
    std::atomic<bool> stop_{false};
    PublishResult result_;
    bool publisher_done_ = true;
    double publish_finished_ = 0;
    // current command
    double sync_timeout_ = 10, sync_started_ = 0;
    PublishPlan plan_;
    double step_secs_ = 1, drain_secs_ = 2, step_started_ = 0, cpu_at_start_ = 0;
    double give_up_ms_ = 0;
    bool aborted_ = false;
    bool listening_ = false;  // the current step is a `listen`
    int64_t next_seq_ = 0;
    int streaming_at_start_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
    const Options opt = parse_args(argc, argv);
    raise_fd_limit();
    std::signal(SIGPIPE, SIG_IGN);
    Session session(opt);
    return session.run();
}
