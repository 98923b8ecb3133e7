// The only file that includes pybind11: thin wrappers, no logic.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>

#include "fanwire/broker.hpp"
#include "fanwire/notices.hpp"
#include "fanwire/stream.hpp"
#include "fanwire/writer.hpp"

namespace py = pybind11;
using namespace fanwire;

namespace {

// One topic's part of a Batch: only topics that dropped messages or are closed.
struct TopicNote {
  std::string topic;
  uint64_t dropped = 0;
  CloseReason close_reason = CloseReason::none;
  bool ended = false;  // it left the stream (or ended it: see Stream.end)
};

// What Stream.take returns: the encoded pieces (bytes for SSE and WebSocket frames,
// texts for WebSocket texts), with every notice in place (drops, ends).
struct Batch {
  py::bytes data;
  py::list texts;
  size_t messages = 0;
  uint64_t dropped = 0;
  std::vector<TopicNote> topics;
};

// Concatenates a take's pieces into one bytes object: one write per wake-up.
py::bytes join(const Taken& taken) {
  PyObject* bytes = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(taken.byte_size()));
  if (!bytes) throw py::error_already_set();
  char* out = PyBytes_AS_STRING(bytes);
  for (const auto& piece : taken.pieces()) {
    const std::string_view part = taken.bytes(piece);
    std::memcpy(out, part.data(), part.size());
    out += part.size();
  }
  return py::reinterpret_steal<py::bytes>(bytes);
}

py::list texts_of(const Taken& taken) {
  const auto& pieces = taken.pieces();
  py::list out(pieces.size());
  for (size_t i = 0; i < pieces.size(); ++i) {
    const std::string_view text = taken.bytes(pieces[i]);
    PyObject* str = PyUnicode_DecodeUTF8(text.data(), static_cast<Py_ssize_t>(text.size()), "strict");
    if (!str) throw py::error_already_set();
    PyList_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(i), str);
  }
  return out;
}

Batch take_batch(Stream& stream) {
  // Every call holds the GIL, so one scratch serves every connection: an idle one costs
  // only its Stream's list of subscribers. (A take from a finalizer run while this one
  // builds its Python objects gets its own.)
  static Taken shared;
  static bool busy = false;
  Taken own;
  Taken& taken = busy ? own : shared;
  struct Busy {
    bool& flag;
    bool was;
    ~Busy() { flag = was; }
  } guard{busy, busy};
  busy = true;
  stream.take(taken);
  Batch batch;
  if (!taken.pieces().empty()) {
    if (stream.encoding() == Encoding::ws_text) {
      batch.texts = texts_of(taken);
    } else {
      batch.data = join(taken);
    }
  }
  batch.messages = taken.message_count();
  batch.dropped = taken.dropped_count();
  for (const TopicTake& t : taken.topics()) {
    if (t.dropped == 0 && t.reason == CloseReason::none) continue;
    batch.topics.push_back(TopicNote{t.topic, t.dropped, t.reason, t.ended});
  }
  taken.clear();
  return batch;
}

// The wake-ups of one Core.drain: the waiter tokens split from their closing bit here,
// so that no bit mask crosses the binding. Two lists of ints, not one object per
// wake-up: a round wakes every ready client, and a bound object per client per round
// cost the 1,000-client WebSocket benchmark half its sustained rate.
struct Wakes {
  std::vector<uint64_t> ready;    // waiters with something ready
  std::vector<uint64_t> closing;  // waiters the core is closing (shutdown, slow consumer)
};

// What encode returns: a message as the core encodes it at publish time.
struct Encoded {
  py::bytes sse;
  py::str ws;
};

// Core objects alive in the process, of every Core: for leak checks in tests only.
struct LiveCounts {
  int64_t messages = 0;
  int64_t subscribers = 0;
};

PublishResult publish(Broker& broker, std::string_view topic, py::bytes data,
                      std::string_view event, std::string_view id, bool on_loop, double ts) {
  const std::string_view payload = data;  // the caller keeps `data` alive
  if (payload.find_first_of("\r\n") != std::string_view::npos)
    throw py::value_error("payload must be compact JSON with no raw newline");
  PublishResult result;
  {
    py::gil_scoped_release release;
    result = broker.publish(topic, payload, event, id, on_loop, ts);
  }
  return result;
}

// A batch publish: `data` and `events` pair up, in order (one core call for the batch);
// with external ids, `ids` and `stamps` (the publishers' times) too.
PublishManyResult publish_many(Broker& broker, std::string_view topic,
                               const std::vector<py::bytes>& data,
                               const std::vector<std::string>& events, bool on_loop,
                               const std::vector<std::string>& ids,
                               const std::vector<double>& stamps) {
  if (data.size() != events.size())
    throw py::value_error("data and events must be of the same length");
  const bool fed = !ids.empty() || !stamps.empty();
  if (fed && (ids.size() != data.size() || stamps.size() != data.size()))
    throw py::value_error("ids and stamps must be given for every message, or not at all");
  std::vector<BatchItem> items;
  items.reserve(data.size());
  for (size_t i = 0; i < data.size(); ++i) {
    const std::string_view payload = data[i];  // the caller keeps `data` alive
    if (payload.find_first_of("\r\n") != std::string_view::npos)
      throw py::value_error("payload must be compact JSON with no raw newline");
    items.push_back(ids.empty() ? BatchItem{payload, events[i]}
                                : BatchItem{payload, events[i], ids[i], stamps[i]});
  }
  py::gil_scoped_release release;
  return broker.publish_many(topic, items, on_loop);
}

std::shared_ptr<Subscriber> subscribe(Broker& broker, std::string_view topic, uint64_t waiter,
                                      size_t last_n, std::optional<std::string> since,
                                      Policy policy, size_t queue_size) {
  SubscribeOptions options;
  options.waiter = waiter;
  options.last_n = last_n;
  options.since = std::move(since);
  options.policy = policy;
  options.queue_size = queue_size;
  return broker.subscribe(topic, options);
}

// Encodes a message exactly as the core does at publish time (for history read from a
// shared log, e.g. Redis XRANGE): its SSE frame and its WebSocket event text.
Encoded encode(std::string_view topic, std::string_view id, py::bytes data,
               std::string_view event, double ts) {
  auto key = MessageKey::parse(id);
  if (!key) throw py::value_error("bad message id");
  auto message = Message::make(*key, id, topic, event, std::string_view(data), ts);
  auto ws = message->ws();
  return Encoded{py::bytes(message->sse().data(), message->sse().size()),
                 py::str(ws.data(), ws.size())};
}

std::shared_ptr<Sink> attach(Writer& writer, std::vector<std::shared_ptr<Subscriber>> subs, int fd,
                             py::bytes preamble, double heartbeat, uint64_t waiter,
                             double close_grace) {
  Sink::Options options;
  options.fd = fd;
  options.preamble = std::string(std::string_view(preamble));
  options.heartbeat_seconds = heartbeat;
  options.close_grace_seconds = close_grace;
  options.loop_waiter = waiter;
  py::gil_scoped_release release;
  return writer.attach(std::move(subs), std::move(options));
}

std::shared_ptr<WsSink> attach_ws(Writer& writer, int fd, uint64_t waiter, size_t max_message,
                                  double ping_interval, double ping_timeout, double heartbeat,
                                  double close_grace) {
  WsSink::Options options;
  options.fd = fd;
  options.loop_waiter = waiter;
  options.max_message = max_message;
  options.ping_interval = ping_interval;
  options.ping_timeout = ping_timeout;
  options.heartbeat_seconds = heartbeat;
  options.close_grace_seconds = close_grace;
  py::gil_scoped_release release;
  return writer.attach_ws(std::move(options));
}

std::string as_string(const py::bytes& bytes) { return std::string(std::string_view(bytes)); }

// A notice as the Python side sends it: bytes (SSE, WebSocket frames) or a str
// (WebSocket texts). Notices are rare: one object each is fine.
py::object as_python(Encoding encoding, const std::string& notice) {
  if (encoding == Encoding::ws_text) return py::str(notice);
  return py::bytes(notice);
}

Wakes drain(Broker& broker) {
  std::vector<uint64_t> tokens;
  broker.drain(tokens);
  Wakes out;
  out.ready.reserve(tokens.size());
  for (uint64_t token : tokens) {
    const uint64_t waiter = token & Notifier::kWaiterMask;
    ((token & Notifier::kClosingBit) ? out.closing : out.ready).push_back(waiter);
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "fanwire's native fan-out core";
  py::register_exception<TopicNotFound>(m, "TopicNotFound", PyExc_KeyError);

  py::class_<Subscriber, std::shared_ptr<Subscriber>>(m, "CoreSub")
      .def_property_readonly("topic", &Subscriber::topic_name)
      .def_property_readonly("gap", &Subscriber::gap)
      .def_property_readonly("first_available", &Subscriber::first_available)
      .def_property_readonly("pending", &Subscriber::pending)
      .def_property_readonly("dropped", &Subscriber::dropped)
      .def_property_readonly("close_reason", &Subscriber::close_reason)
      .def("arm", &Subscriber::arm)
      .def("skip_through",
           [](Subscriber& s, std::string_view id) {
             auto key = MessageKey::parse(id);
             if (!key) throw py::value_error("bad message id");
             s.skip_through(*key);
           })
      .def("close", &Subscriber::close)
      .def_property("join_leave", &Subscriber::join_leave, &Subscriber::set_join_leave);
  m.def("ws_frame", [](std::string_view text) { return py::bytes(fanwire::ws_frame(text)); },
        py::arg("text"));
  py::class_<Encoded>(m, "Encoded")
      .def_readonly("sse", &Encoded::sse)
      .def_readonly("ws", &Encoded::ws);
  m.def("encode", &encode, py::arg("topic"), py::arg("message_id"), py::arg("data"),
        py::arg("event"), py::arg("ts"));

  py::enum_<Policy>(m, "Policy")
      .value("drop_oldest", Policy::drop_oldest)
      .value("disconnect", Policy::disconnect)
      .value("conflate", Policy::conflate);

  py::enum_<Encoding>(m, "Encoding")
      .value("sse", Encoding::sse)
      .value("ws", Encoding::ws_text)
      .value("ws_frames", Encoding::ws_frame);

  py::enum_<CloseReason>(m, "CloseReason")
      .value("none", CloseReason::none)
      .value("unsubscribed", CloseReason::unsubscribed)
      .value("slow_consumer", CloseReason::slow_consumer)
      .value("topic_deleted", CloseReason::topic_deleted)
      .value("shutdown", CloseReason::shutdown)
      .value("ended", CloseReason::ended);

  py::enum_<StreamEnd>(m, "StreamEnd")
      .value("none", StreamEnd::none)
      .value("no_topics", StreamEnd::no_topics)
      .value("shutdown", StreamEnd::shutdown)
      .value("slow_consumer", StreamEnd::slow_consumer)
      .value("client_gone", StreamEnd::client_gone)
      .value("closed", StreamEnd::closed);

  // The notices Python sends itself (a resume's gap, a writer's heartbeat), encoded by
  // the core like every other notice.
  m.def("gap_notice",
        [](Encoding e, std::string_view topic, std::optional<std::string_view> first) {
          return as_python(e, notice::gap(e, topic, first));
        },
        py::arg("encoding"), py::arg("topic"), py::arg("first_available"));
  m.def("heartbeat_notice",
        [](Encoding e) { return as_python(e, notice::heartbeat(e, notice::now())); },
        py::arg("encoding"));

  py::class_<TopicNote>(m, "TopicNote")
      .def_readonly("topic", &TopicNote::topic)
      .def_readonly("dropped", &TopicNote::dropped)
      .def_readonly("close_reason", &TopicNote::close_reason)
      .def_readonly("ended", &TopicNote::ended);

  py::class_<Batch>(m, "Batch")
      .def_readonly("data", &Batch::data)
      .def_readonly("texts", &Batch::texts)
      .def_readonly("messages", &Batch::messages)
      .def_readonly("dropped", &Batch::dropped)
      .def_readonly("topics", &Batch::topics);

  py::class_<Stream>(m, "Stream")
      .def(py::init([](Encoding encoding, bool end_when_empty) {
             return std::make_unique<Stream>(encoding, std::vector<std::shared_ptr<Subscriber>>{},
                                             end_when_empty);
           }),
           py::arg("encoding"), py::arg("end_when_empty") = false)
      .def_property_readonly("encoding", &Stream::encoding)
      .def_property_readonly("end", &Stream::end)
      .def("__len__", &Stream::size)
      .def("add",
           [](Stream& s, std::shared_ptr<Subscriber> sub, bool held) { s.add(std::move(sub), held); },
           py::arg("sub"), py::arg("held") = false)
      .def("release", [](Stream& s, const Subscriber& sub) { s.release(sub); }, py::arg("sub"))
      .def("mark_ended", [](Stream& s, const Subscriber& sub) { s.mark_ended(sub); },
           py::arg("sub"))
      .def("remove", [](Stream& s, const Subscriber& sub) { return s.remove(sub); },
           py::arg("sub"))
      .def("arm", &Stream::arm)
      .def("take", &take_batch)
      .def("end_for_shutdown",
           [](Stream& s) -> py::object {
             std::string notice;
             if (!s.end_for_shutdown(notice)) return py::none();
             return as_python(s.encoding(), notice);
           })
      .def("close", [](Stream& s) { s.finish(StreamEnd::closed); });

  py::class_<LiveCounts>(m, "LiveCounts")
      .def_readonly("messages", &LiveCounts::messages)
      .def_readonly("subscribers", &LiveCounts::subscribers);
  m.def("live_in_process", [] {
    return LiveCounts{Message::live_in_process(), Subscriber::live_in_process()};
  });

  py::class_<Sink, std::shared_ptr<Sink>>(m, "Sink")
      .def_property_readonly("end", &Sink::end)
      .def_property_readonly("flushed", &Sink::flushed)
      .def_property_readonly("frames", &Sink::frames_written)
      .def_property_readonly("done", &Sink::done)
      .def("inject", [](Sink& s, py::bytes bytes) { s.inject(std::string(std::string_view(bytes))); })
      .def("close", &Sink::close, py::call_guard<py::gil_scoped_release>());

  py::class_<WsSink, std::shared_ptr<WsSink>>(m, "WsSink")
      .def_property_readonly("end", &WsSink::end)
      .def_property_readonly("frames", &WsSink::frames_written)
      .def_property_readonly("done", &WsSink::done)
      .def_property_readonly("close_code", &WsSink::close_code)
      .def("send", [](WsSink& s, py::bytes frames) { s.send(as_string(frames)); })
      .def("hold", &WsSink::hold)
      .def("release", &WsSink::release)
      .def("subscribe",
           [](WsSink& s, std::shared_ptr<Subscriber> sub, py::bytes frames) {
             return s.subscribe(std::move(sub), as_string(frames));
           })
      .def("unsubscribe",
           [](WsSink& s, const Subscriber& sub, py::bytes frames) {
             return s.unsubscribe(sub, as_string(frames));
           })
      .def("inject", [](WsSink& s, py::bytes frames) { s.inject(as_string(frames)); })
      .def("shutdown", &WsSink::shutdown)
      .def("close_with", &WsSink::close_with, py::arg("code"))
      .def("receive",
           [](WsSink& s) {
             py::list out;
             for (auto& message : s.receive()) out.append(py::bytes(message));
             return out;
           })
      .def("close", &WsSink::close, py::call_guard<py::gil_scoped_release>());

  py::class_<Writer>(m, "Writer")
      .def(py::init([](const Broker& broker, size_t threads) {
             return std::make_unique<Writer>(broker.notifier(), threads, broker.inbox());
           }),
           py::arg("core"), py::arg("threads") = 0, py::keep_alive<1, 2>())
      .def("attach", &attach, py::arg("subs"), py::arg("fd"), py::arg("preamble"),
           py::arg("heartbeat"), py::arg("waiter"), py::arg("close_grace") = 5.0)
      .def("attach_ws", &attach_ws, py::arg("fd"), py::arg("waiter"), py::arg("max_message"),
           py::arg("ping_interval"), py::arg("ping_timeout"), py::arg("heartbeat"),
           py::arg("close_grace"))
      .def("sink_count", &Writer::sink_count)
      .def("thread_count", &Writer::thread_count)
      .def("limit_grace", &Writer::limit_grace, py::arg("seconds"));

  py::class_<PublishResult>(m, "PublishResult")
      .def_readonly("id", &PublishResult::id)
      .def_readonly("subscribers", &PublishResult::subscribers)
      .def_readonly("must_drain", &PublishResult::must_drain);

  py::class_<PublishManyResult>(m, "PublishManyResult")
      .def_readonly("ids", &PublishManyResult::ids)
      .def_readonly("subscribers", &PublishManyResult::subscribers)
      .def_readonly("must_drain", &PublishManyResult::must_drain);

  py::class_<Wakes>(m, "Wakes")
      .def_readonly("ready", &Wakes::ready)
      .def_readonly("closing", &Wakes::closing);

  py::class_<BrokerCounters>(m, "Counters")
      .def_readonly("messages", &BrokerCounters::messages)
      .def_readonly("subscribers", &BrokerCounters::subscribers)
      .def_readonly("published", &BrokerCounters::published)
      .def_readonly("delivered", &BrokerCounters::delivered)
      .def_readonly("dropped", &BrokerCounters::dropped)
      .def_readonly("conflated", &BrokerCounters::conflated);

  py::class_<TopicStats>(m, "TopicStats")
      .def_readonly("name", &TopicStats::name)
      .def_readonly("subscribers", &TopicStats::subscribers)
      .def_readonly("messages", &TopicStats::messages)
      .def_readonly("dropped", &TopicStats::dropped)
      .def_readonly("retained", &TopicStats::retained)
      .def_readonly("conflated", &TopicStats::conflated);

  py::class_<Broker>(m, "Core")
      .def(py::init<size_t, uint64_t, bool>(), py::arg("retention") = 1000,
           py::arg("epoch") = 0, py::arg("external_ids") = false)
      .def_property_readonly("epoch", &Broker::epoch)
      .def("fileno", &Broker::fd)
      .def("inbox_fileno", &Broker::inbox_fd)
      .def("create_topic", &Broker::create_topic, py::arg("name"), py::arg("retention") = 0,
           py::arg("max_age") = 0.0, py::arg("conflate_key") = "", py::arg("cache") = false)
      .def("delete_topic", &Broker::delete_topic, py::call_guard<py::gil_scoped_release>())
      .def("has_topic", &Broker::has_topic)
      .def("topic_count", &Broker::topic_count)
      .def("topic_stats", &Broker::topic_stats)
      .def("publish", &publish, py::arg("topic"), py::arg("data"), py::arg("event") = "",
           py::arg("message_id") = "", py::arg("on_loop") = false, py::arg("ts") = 0.0)
      .def("publish_many", &publish_many, py::arg("topic"), py::arg("data"), py::arg("events"),
           py::arg("on_loop") = false, py::arg("ids") = std::vector<std::string>{},
           py::arg("stamps") = std::vector<double>{})
      .def("notify",
           [](Broker& b, std::string_view topic, bool join, py::bytes member, bool on_loop) {
             const std::string_view json = member;  // the caller keeps `member` alive
             py::gil_scoped_release release;
             return b.notify(topic, join, json, on_loop);
           },
           py::arg("topic"), py::arg("join"), py::arg("member"), py::arg("on_loop") = false)
      .def("subscribe", &subscribe, py::arg("topic"), py::arg("waiter"), py::arg("last_n") = 0,
           py::arg("since") = py::none(), py::arg("policy") = Policy::drop_oldest,
           py::arg("queue_size") = 1000)
      .def("drain", &drain)
      .def("drain_inbox",
           [](Broker& broker) {
             std::vector<uint64_t> waiters;
             broker.drain_inbox(waiters);
             return waiters;
           })
      .def("shutdown", &Broker::shutdown, py::call_guard<py::gil_scoped_release>())
      .def("counters", &Broker::counters)
      .def_property_readonly("external_ids", &Broker::external_ids);
}
