// Incremental parsers for what a subscriber receives: the HTTP response head,
// a chunked body, SSE frames and server-to-client WebSocket frames.
// Each one consumes bytes as they arrive, in any split.
#pragma once
#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

// Collects the response head up to the blank line.
struct HttpHead {
    std::string bytes;
    int status = 0;
    bool chunked = false;
    bool deflate = false;  // the server accepted permessage-deflate

    // Returns how many bytes of `data` belong to the head, or npos if more are needed.
    size_t feed(std::string_view data) {
        const size_t before = bytes.size();
        bytes.append(data);
        const size_t end = bytes.find("\r\n\r\n");
        if (end == std::string::npos) return std::string_view::npos;
        bytes.resize(end + 4);
        parse();
        return end + 4 - before;
    }

private:
    void parse() {
        if (bytes.size() > 12) status = std::atoi(bytes.c_str() + 9);  // "HTTP/1.1 200"
        std::string lower(bytes);
        std::transform(lower.begin(), lower.end(), lower.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        chunked = lower.find("transfer-encoding: chunked") != std::string::npos;
        deflate = lower.find("sec-websocket-extensions: permessage-deflate") != std::string::npos;
    }
};

// Strips HTTP/1.1 chunked framing and hands the body bytes on.
class ChunkedDecoder {
public:
    bool finished() const { return state_ == State::Done; }

    template <typename Sink>
    void feed(const char* p, size_t n, Sink&& sink) {
        while (n > 0 && state_ != State::Done) {
            if (state_ == State::Data) {
                const size_t take = std::min<size_t>(n, remaining_);
                sink(p, take);
                p += take, n -= take, remaining_ -= take;
                if (remaining_ == 0) state_ = State::DataCr;
                continue;
            }
            step(*p);
            ++p, --n;
        }
    }

private:
    enum class State { Size, Ext, SizeLf, Data, DataCr, DataLf, Done };

    void step(char c) {
        switch (state_) {
            case State::Size:
                if (std::isxdigit(static_cast<unsigned char>(c))) {
                    remaining_ = remaining_ * 16 + hex(c);
                } else {
                    state_ = c == '\r' ? State::SizeLf : State::Ext;
                }
                break;
            case State::Ext:
                if (c == '\r') state_ = State::SizeLf;
                break;
            case State::SizeLf:
                state_ = remaining_ == 0 ? State::Done : State::Data;
                break;
            case State::DataCr:
                state_ = State::DataLf;
                break;
            case State::DataLf:
                state_ = State::Size;
                remaining_ = 0;
                break;
            default:
                break;
        }
    }
    static size_t hex(char c) {
        if (c >= '0' && c <= '9') return static_cast<size_t>(c - '0');
        return static_cast<size_t>(std::tolower(static_cast<unsigned char>(c)) - 'a' + 10);
    }

    State state_ = State::Size;
    size_t remaining_ = 0;
};

// Splits an SSE stream into lines and reports each `data:` line and each event end,
// without copying a line unless a read split it. Lines end with LF or CRLF (a lone CR
// is not supported: no server here sends it).
class SseParser {
public:
    // on_line(text) gets the value of each data line, on_line({}) the end of each event.
    template <typename OnLine>
    void feed(const char* p, size_t n, OnLine&& on_line) {
        while (n > 0) {
            const char* nl = static_cast<const char*>(std::memchr(p, '\n', n));
            if (nl == nullptr) {
                carry_.append(p, n);
                return;
            }
            const size_t len = static_cast<size_t>(nl - p);
            if (carry_.empty()) {
                line(std::string_view(p, len), on_line);
            } else {
                carry_.append(p, len);
                line(carry_, on_line);
                carry_.clear();
            }
            p = nl + 1, n -= len + 1;
        }
    }

private:
    template <typename OnLine>
    static void line(std::string_view text, OnLine&& on_line) {
        if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
        if (text.empty()) {
            on_line(std::string_view{});
        } else if (text.starts_with("data:")) {
            on_line(text.substr(5));
        }
    }

    std::string carry_;
};

// Parses unmasked (server-to-client) WebSocket frames, reassembling fragments.
class WsParser {
public:
    enum Op : uint8_t { Continuation = 0, Text = 1, Binary = 2, Close = 8, Ping = 9, Pong = 10 };

    // on_frame(op, payload) is called for each complete message or control frame.
    template <typename OnFrame>
    void feed(const char* p, size_t n, OnFrame&& on_frame) {
        buf_.append(p, n);
        size_t pos = 0;
        while (true) {
            const size_t used = parse_one(std::string_view(buf_).substr(pos), on_frame);
            if (used == 0) break;
            pos += used;
        }
        buf_.erase(0, pos);
    }

private:
    template <typename OnFrame>
    size_t parse_one(std::string_view b, OnFrame&& on_frame) {
        if (b.size() < 2) return 0;
        const auto b0 = static_cast<uint8_t>(b[0]);
        const auto b1 = static_cast<uint8_t>(b[1]);
        const bool fin = (b0 & 0x80) != 0;
        const auto op = static_cast<Op>(b0 & 0x0f);
        const bool masked = (b1 & 0x80) != 0;
        uint64_t len = b1 & 0x7f;
        size_t head = 2;
        if (len == 126) {
            if (b.size() < 4) return 0;
            len = (static_cast<uint64_t>(static_cast<uint8_t>(b[2])) << 8) |
                  static_cast<uint8_t>(b[3]);
            head = 4;
        } else if (len == 127) {
            if (b.size() < 10) return 0;
            len = 0;
            for (int i = 2; i < 10; ++i) len = (len << 8) | static_cast<uint8_t>(b[i]);
            head = 10;
        }
        const size_t mask_at = head;
        if (masked) head += 4;
        if (b.size() < head + len) return 0;
        std::string_view payload = b.substr(head, len);
        std::string unmasked;
        if (masked) {
            unmasked.assign(payload);
            for (size_t i = 0; i < unmasked.size(); ++i) unmasked[i] ^= b[mask_at + i % 4];
            payload = unmasked;
        }
        deliver(fin, op, payload, on_frame);
        return head + len;
    }

    template <typename OnFrame>
    void deliver(bool fin, Op op, std::string_view payload, OnFrame&& on_frame) {
        if (op >= Close) {
            on_frame(op, payload);
        } else if (fin && op != Continuation && fragments_.empty()) {
            on_frame(op, payload);
        } else {
            if (op != Continuation) first_op_ = op;
            fragments_.append(payload);
            if (fin) {
                on_frame(first_op_, std::string_view(fragments_));
                fragments_.clear();
            }
        }
    }

    std::string buf_;
    std::string fragments_;
    Op first_op_ = Text;
};

// A client-to-server WebSocket frame: always masked (RFC 6455 5.3).
inline std::string ws_client_frame(uint8_t op, std::string_view payload) {
    std::string f;
    f.push_back(static_cast<char>(0x80 | op));
    const uint8_t mask[4] = {0x12, 0x34, 0x56, 0x78};
    if (payload.size() < 126) {
        f.push_back(static_cast<char>(0x80 | payload.size()));
    } else {
        f.push_back(static_cast<char>(0x80 | 126));
        f.push_back(static_cast<char>((payload.size() >> 8) & 0xff));
        f.push_back(static_cast<char>(payload.size() & 0xff));
    }
    f.append(reinterpret_cast<const char*>(mask), 4);
    for (size_t i = 0; i < payload.size(); ++i) f.push_back(payload[i] ^ mask[i % 4]);
    return f;
}
