#pragma once
// What the parser found in a connection's bytes, queued in order for the session.

#include <string_view>
#include <variant>
#include <vector>

#include "tether/http/parser.hpp"

#include "message_head.hpp"

namespace tether::proxy::detail {

/// What the parser found, in order: a head, body pieces (views into the read buffer) and the end
/// of a message. The buffer is not read into again until every event of it has been handled, so
/// the views stay valid; several messages may be queued (pipelining).
struct body_piece {
  std::string_view data;
};
struct message_end {};
using event = std::variant<head_ptr, body_piece, message_end>;

class event_queue final : public http::parser_handler {
public:
  explicit event_queue(head_pool& heads) : heads_{&heads} {}

  void on_head(const http::message_head& head) override {
    head_ptr h{nullptr, head_return{heads_}};
    if (heads_->spare.empty()) {
      h.reset(new owned_head); // NOLINT(cppcoreguidelines-owning-memory): held by head_ptr
    } else {
      h.reset(heads_->spare.back().release());
      heads_->spare.pop_back();
    }
    h->assign(head);
    events_.emplace_back(std::move(h));
  }
  void on_body(std::string_view piece) override { events_.emplace_back(body_piece{piece}); }
  void on_message_complete() override { events_.emplace_back(message_end{}); }

  [[nodiscard]] bool empty() const noexcept { return first_ == events_.size(); }
  event& front() noexcept { return events_[first_]; }
  /// Takes the front event off. A vector read from the front, emptied once all is read: its
  /// capacity stays, so a queue costs no allocation per message (a deque of events this size
  /// allocates a node for every two).
  void pop_front() noexcept {
    if (++first_ == events_.size()) {
      clear();
    }
  }
  void clear() noexcept {
    events_.clear();
    first_ = 0;
  }
  /// Between messages: lets go of the room a long message's pieces made (a chunked body of
  /// small chunks queues one event each), so an idle connection does not keep it.
  void trim() noexcept {
    if (empty() && events_.capacity() > 16) {
      std::vector<event>{}.swap(events_);
      first_ = 0;
    }
  }

private:
  head_pool* heads_;
  std::vector<event> events_;
  std::size_t first_ = 0;
};

} // namespace tether::proxy::detail
