#include "tether/upstream/attempts.hpp"

namespace tether::upstream {

attempts::attempts(const setup& s)
    : retry_{s.policy, s.traits, s.started, s.budget}, policy_{s.policy}, budget_{s.budget},
      retry_limit_{s.budget == nullptr ? s.retry_limit : nullptr},
      may_resend_{s.traits.has_idempotency_key ||
                  resilience::is_idempotent_method(s.traits.method)},
      body_whole_{s.traits.body_replayable} {}

attempts::decision attempts::after(const resilience::attempt_outcome& outcome,
                                   clock::time_point now, random_source& random) {
  decision d{retry_.decide(outcome, now, random)};
  if (d.retry && retry_limit_ != nullptr && !retry_slot_) {
    retry_slot_ = resilience::resource_guard{*retry_limit_};
    if (!retry_slot_) {
      d.retry = false;
      d.delay = clock::duration::zero();
      d.reason = resilience::give_up_reason::not_retriable;
      d.over_retry_limit = true;
    }
  }
  return d;
}

std::optional<attempts::decision> attempts::at_response(const resilience::attempt_outcome& outcome,
                                                        clock::time_point now,
                                                        random_source& random) {
  if (policy_.is_retriable(outcome)) {
    return after(outcome, now, random);
  }
  // What retry_state::decide would tell the budget, without its work for a success: most
  // responses come through here.
  if (budget_ != nullptr && outcome.result == resilience::attempt_result::http_status &&
      outcome.status < 500) {
    budget_->on_result(true);
  }
  return std::nullopt;
}

bool attempts::replay_after_stale(bool reused, bool response_bytes,
                                  const resilience::attempt_outcome& outcome) noexcept {
  if (!reused || response_bytes || outcome.result != resilience::attempt_result::reset ||
      !may_resend_ || !body_whole_ || replayed_) {
    return false;
  }
  replayed_ = true;
  return true;
}

} // namespace tether::upstream
