// Outbox: gathered views and the queue reach the socket in order, whatever a full socket
// refuses, and a refused part survives its buffers.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "check.hpp"
#include "fanwire/outbox.hpp"

using fanwire::Outbox;

namespace {

struct Pair {  // a non-blocking socket pair with a small send buffer
  int out = -1, in = -1;
  Pair() {
    int fds[2];
    ::socketpair(AF_UNIX, SOCK_STREAM, 0, fds);
    out = fds[0];
    in = fds[1];
    const int small = 4096;
    ::setsockopt(out, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    ::fcntl(out, F_SETFL, O_NONBLOCK);
    ::fcntl(in, F_SETFL, O_NONBLOCK);
  }
  ~Pair() {
    if (out >= 0) ::close(out);
    if (in >= 0) ::close(in);
  }
  std::string read_all() const {
    std::string got;
    char buf[65536];
    ssize_t n;
    while ((n = ::read(in, buf, sizeof buf)) > 0) got.append(buf, static_cast<size_t>(n));
    return got;
  }
};

std::string piece(int i) { return "<" + std::to_string(i) + std::string(97, 'x') + ">"; }

}  // namespace

TEST(everything_gathered_goes_out_in_order) {
  Pair pair;
  Outbox box;
  box.append("head;");
  std::vector<std::string> parts;
  for (int i = 0; i < 10; ++i) parts.push_back(piece(i));
  std::string want = "head;";
  for (const auto& p : parts) {
    box.gather(p);
    want += p;
  }
  box.gather("");  // empty views are skipped
  CHECK(box.send(pair.out) == Outbox::Sent::all);
  CHECK(!box.blocked());
  CHECK(pair.read_all() == want);
}

TEST(a_full_socket_keeps_the_rest_after_its_buffers_are_gone) {
  Pair pair;
  Outbox box;
  std::string want;
  Outbox::Sent sent = Outbox::Sent::all;
  {
    // More views than one sendmsg takes (IOV_MAX) and more bytes than the socket holds.
    std::vector<std::string> parts;
    for (int i = 0; i < 3000; ++i) parts.push_back(piece(i));
    for (const auto& p : parts) {
      box.gather(p);
      want += p;
    }
    sent = box.send(pair.out);
    for (auto& p : parts) p.assign(p.size(), '!');  // the ring moved on
  }
  CHECK(sent == Outbox::Sent::blocked);
  CHECK(box.blocked());
  std::string got = pair.read_all();
  box.append("tail");  // queued behind what the socket refused
  want += "tail";
  for (int round = 0; round < 10000 && box.blocked(); ++round) {
    box.send(pair.out);
    got += pair.read_all();
  }
  CHECK(!box.blocked());
  got += pair.read_all();
  CHECK(got == want);
}

TEST(a_gone_peer_drops_everything) {
  Pair pair;
  ::close(pair.in);
  pair.in = -1;
  Outbox box;
  box.append("queued");
  box.gather("view");
  CHECK(box.send(pair.out) == Outbox::Sent::gone);
  CHECK(!box.blocked());
}

int main() { return fanwire_test::run_all(); }
