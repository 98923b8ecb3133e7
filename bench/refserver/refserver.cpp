// refserver: the physical-limit reference for the fanwire benchmark.
//
// A single-threaded epoll server with no framework. It keeps every `GET /stream...`
// connection as an SSE subscriber (minimal response head, no chunking) and answers
// `POST /topics/{name}/messages {"data": X}` with 202. All the publishes read in one
// event-loop pass form a batch: their SSE frames are encoded once, concatenated, and
// written to every subscriber with one write() per subscriber per batch. A subscriber
// whose unsent backlog passes 1 MiB is disconnected. There is a single stream: topics
// are accepted and named in the frames, but every subscriber gets every message.
//
// Also answers GET /health and POST /topics so the benchmark runner treats it like
// any other server. Usage: refserver --port P [--host 127.0.0.1]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr size_t kMaxBacklog = 1 << 20;  // unsent bytes per subscriber before disconnect

struct Conn {
    int fd = -1;
    bool subscriber = false;
    size_t sub_index = 0;   // position in Server::subs_
    std::string in;         // unparsed request bytes
    std::string out;        // unsent response or stream bytes
};

struct Request {
    std::string_view method, target, body;
    size_t size = 0;  // bytes consumed, 0 if incomplete
};

double epoch_now() {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

size_t content_length(std::string_view head) {
    for (const char* key : {"\r\ncontent-length:", "\r\nContent-Length:"}) {
        const size_t at = head.find(key);
        if (at != std::string_view::npos) return std::strtoul(head.data() + at + std::strlen(key), nullptr, 10);
    }
    return 0;
}

Request parse_request(std::string_view in) {
    Request r;
    const size_t end = in.find("\r\n\r\n");
    if (end == std::string_view::npos) return r;
    const std::string_view head = in.substr(0, end);
    const size_t len = content_length(head);
    if (in.size() < end + 4 + len) return r;
    const size_t sp1 = head.find(' ');
    const size_t sp2 = head.find(' ', sp1 + 1);
    r.method = head.substr(0, sp1);
    r.target = head.substr(sp1 + 1, sp2 - sp1 - 1);
    r.body = in.substr(end + 4, len);
    r.size = end + 4 + len;
    return r;
}

std::string response(int status, std::string_view reason, std::string_view json) {
    return "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) +
           "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(json.size()) +
           "\r\n\r\n" + std::string(json);
}

// `{"data": X}` -> X (the publisher's JSON, passed through untouched).
std::string_view data_of(std::string_view body) {
    const size_t key = body.find("\"data\"");
    const size_t colon = body.find(':', key);
    const size_t close = body.rfind('}');
    if (key == std::string_view::npos || colon == std::string_view::npos || close <= colon) {
        return "null";
    }
    std::string_view v = body.substr(colon + 1, close - colon - 1);
    while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
    return v;
}

class Server {
public:
    explicit Server(uint16_t port, const char* host) {
        listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        const int one = 1;
        setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(port);
        inet_pton(AF_INET, host, &addr.sin_addr);
        if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
            listen(listen_fd_, 4096) != 0) {
            std::perror("refserver: bind/listen");
            std::exit(1);
        }
        epfd_ = epoll_create1(0);
        watch(listen_fd_, EPOLLIN);
    }

    void run() {
        epoll_event events[512];
        while (true) {
            const int n = epoll_wait(epfd_, events, 512, -1);
            for (int i = 0; i < n; ++i) on_event(events[i].data.fd, events[i].events);
            flush_batch();
        }
    }

private:
    void watch(int fd, uint32_t events, int op = EPOLL_CTL_ADD) {
        epoll_event ev{};
        ev.events = events;
        ev.data.fd = fd;
        epoll_ctl(epfd_, op, fd, &ev);
    }

    Conn* conn(int fd) { return fd < static_cast<int>(conns_.size()) ? conns_[fd].get() : nullptr; }

    void on_event(int fd, uint32_t events) {
        if (fd == listen_fd_) return accept_all();
        Conn* c = conn(fd);
        if (c == nullptr) return;
        if (events & (EPOLLHUP | EPOLLERR)) return close_conn(*c);
        if (events & EPOLLOUT) flush_out(*c);
        if (conn(fd) != nullptr && (events & (EPOLLIN | EPOLLRDHUP))) read_requests(*c);
    }

    void accept_all() {
        while (true) {
            const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK);
            if (fd < 0) return;
            const int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            if (fd >= static_cast<int>(conns_.size())) conns_.resize(fd + 1);
            conns_[fd] = std::make_unique<Conn>();
            conns_[fd]->fd = fd;
            watch(fd, EPOLLIN | EPOLLRDHUP);
        }
    }

    void read_requests(Conn& c) {
        char buf[65536];
        const ssize_t n = ::read(c.fd, buf, sizeof buf);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return close_conn(c);
        if (n < 0 || c.subscriber) return;  // a subscriber has nothing more to say
        c.in.append(buf, static_cast<size_t>(n));
        std::string replies;
        size_t pos = 0;
        while (true) {
            const Request r = parse_request(std::string_view(c.in).substr(pos));
            if (r.size == 0) break;
            pos += r.size;
            if (r.method == "GET" && r.target.starts_with("/stream")) {
                c.in.clear();
                return subscribe(c);
            }
            replies += handle(r);
        }
        c.in.erase(0, pos);
        send(c, replies);
    }

    std::string handle(const Request& r) {
        if (r.method == "POST" && r.target.starts_with("/topics/") && r.target.ends_with("/messages")) {
            const std::string_view topic = r.target.substr(8, r.target.size() - 8 - 9);
            const std::string id = std::to_string(++next_id_);
            char ts[32];
            std::snprintf(ts, sizeof ts, "%.6f", epoch_now());
            batch_ += "id: " + id + "\nevent: message\ndata: {\"topic\":\"" + std::string(topic) +
                      "\",\"data\":" + std::string(data_of(r.body)) + ",\"ts\":" + ts + "}\n\n";
            return response(202, "Accepted", "{\"message_id\":\"" + id + "\",\"subscribers\":" +
                                                 std::to_string(subs_.size()) + "}");
        }
        if (r.method == "POST" && r.target == "/topics") {
            return response(201, "Created", "{\"created\":true}");
        }
        if (r.method == "GET" && r.target == "/health") {
            return response(200, "OK", "{\"status\":\"healthy\",\"active_subscriber_count\":" +
                                           std::to_string(subs_.size()) + "}");
        }
        return response(404, "Not Found", "{\"detail\":\"not found\"}");
    }

    void subscribe(Conn& c) {
        c.subscriber = true;
        c.sub_index = subs_.size();
        subs_.push_back(c.fd);
        send(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                "Connection: close\r\n\r\nretry: 3000\n\n");
    }

    // One write per subscriber for everything published in this loop pass.
    void flush_batch() {
        if (batch_.empty()) return;
        for (size_t i = 0; i < subs_.size();) {
            const int fd = subs_[i];
            send(*conns_[fd], batch_);
            if (i < subs_.size() && subs_[i] == fd) ++i;  // else it was closed and swapped out
        }
        batch_.clear();
    }

    void send(Conn& c, std::string_view data) {
        if (data.empty()) return;
        if (!c.out.empty()) {
            if (c.subscriber && c.out.size() + data.size() > kMaxBacklog) return close_conn(c);
            c.out.append(data);
            return;
        }
        const ssize_t n = ::write(c.fd, data.data(), data.size());
        if (n < 0 && errno != EAGAIN) return close_conn(c);
        const size_t sent = n < 0 ? 0 : static_cast<size_t>(n);
        if (sent < data.size()) {
            c.out.assign(data.substr(sent));
            watch(c.fd, EPOLLIN | EPOLLRDHUP | EPOLLOUT, EPOLL_CTL_MOD);
        }
    }

    void flush_out(Conn& c) {
        const ssize_t n = ::write(c.fd, c.out.data(), c.out.size());
        if (n < 0 && errno != EAGAIN) return close_conn(c);
        if (n > 0) c.out.erase(0, static_cast<size_t>(n));
        if (c.out.empty()) watch(c.fd, EPOLLIN | EPOLLRDHUP, EPOLL_CTL_MOD);
    }

    void close_conn(Conn& c) {
        const int fd = c.fd;
        if (c.subscriber) {  // swap-remove from subs_
            const int last = subs_.back();
            subs_[c.sub_index] = last;
            conns_[last]->sub_index = c.sub_index;
            subs_.pop_back();
        }
        epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
        ::close(fd);
        conns_[fd].reset();
    }

    int listen_fd_ = -1;
    int epfd_ = -1;
    std::vector<std::unique_ptr<Conn>> conns_;  // by fd
    std::vector<int> subs_;                     // subscriber fds
    std::string batch_;
    long long next_id_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
    uint16_t port = 0;
    const char* host = "127.0.0.1";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (std::strcmp(argv[i], "--port") == 0) port = static_cast<uint16_t>(std::atoi(argv[i + 1]));
        if (std::strcmp(argv[i], "--host") == 0) host = argv[i + 1];
    }
    if (port == 0) {
        std::fprintf(stderr, "usage: refserver --port P [--host 127.0.0.1]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    rlimit lim{};
    getrlimit(RLIMIT_NOFILE, &lim);
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
    Server(port, host).run();
}
