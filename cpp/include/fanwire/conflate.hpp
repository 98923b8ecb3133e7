// Keyed conflation (PROTOCOL.md, "Keyed conflation"): the key of a message, and what a
// conflating topic keeps per position of its ring.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace fanwire {

// The raw JSON text of the value of the top-level member `name` of the compact JSON
// object `json` (e.g. `"AAPL"` with its quotes, or `7`), or nullopt when `json` is not an
// object or has no such member. Member names are compared as written (a name spelled
// with escapes does not match). Linear in the bytes before the member; never throws.
std::optional<std::string_view> top_level_field(std::string_view json, std::string_view name);

// Per ring position of a conflating topic: the message's key (if any) and whether a later
// message of the same key superseded it.
struct ConflateSlot {
  std::string key;
  bool keyed = false;
  bool superseded = false;
};

}  // namespace fanwire
